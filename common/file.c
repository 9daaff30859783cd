/* Output files written whole or not at all (see spill_file.h). */
#include "spill_file.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

int spill_file_begin(spill_file_out *o, const char *path, const char *what, spill_err *err) {
    memset(o, 0, sizeof *o);
    o->what = what;
    struct stat st;
    int direct = !stat(path, &st) && !S_ISREG(st.st_mode);
    if (!(o->path = strdup(path))) return spill_err_set(err, "%s %s: out of memory", what, path);
    if (!direct) {
        size_t n = strlen(path) + 32;
        if (!(o->tmp = malloc(n))) {
            spill_file_abort(o);
            return spill_err_set(err, "%s %s: out of memory", what, path);
        }
        snprintf(o->tmp, n, "%s.tmp%ld", path, (long)getpid());
    }
    if (!(o->f = fopen(o->tmp ? o->tmp : path, "w"))) {
        int e = errno;
        spill_err_set(err, "%s %s: cannot create %s: %s", what, path, o->tmp ? o->tmp : path, strerror(e));
        spill_file_abort(o);
        return -1;
    }
    return 0;
}

int spill_file_commit(spill_file_out *o, spill_err *err) {
    int e = 0;
    errno = 0;
    /* what is still buffered is written now (its error is the one to report); an earlier write may
       have failed already, which the stream remembers */
    if (fflush(o->f)) e = errno ? errno : EIO;
    if (!e && ferror(o->f)) e = errno ? errno : EIO;
    if (!e && o->tmp && fsync(fileno(o->f))) e = errno;
    if (fclose(o->f) && !e) e = errno;
    o->f = NULL;
    if (!e && o->tmp && rename(o->tmp, o->path)) e = errno;
    if (e) {
        spill_err_set(err, "%s %s: %s; %s", o->what, o->path, strerror(e),
                      o->tmp ? "nothing was written (the file is as it was)" : "the output is incomplete");
        spill_file_abort(o);
        return -1;
    }
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return 0;
}

void spill_file_abort(spill_file_out *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}
