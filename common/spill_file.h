/* Writing an output file whole or not at all (a profile, a plot): the bytes go to a temporary file
 * beside the destination, which is renamed over it only once everything is written and synced. A
 * write error (a full disk, a file size limit), or an interruption before the rename, leaves the
 * destination as it was and no temporary behind. A destination that exists and is not a regular file
 * (/dev/stdout, a pipe) is written directly. */
#ifndef SPILL_FILE_H
#define SPILL_FILE_H

#include <stdio.h>

#include "spill_common.h"

typedef struct spill_file_out {
    FILE *f;          /* write here */
    char *path;       /* the destination */
    char *tmp;        /* the temporary, or NULL when writing the destination directly */
    const char *what; /* the flag, for messages ("--profile-out") */
} spill_file_out;

int spill_file_begin(spill_file_out *o, const char *path, const char *what, spill_err *err);
/* Flush, sync, close and rename; on any error the temporary is removed and err says what failed. */
int spill_file_commit(spill_file_out *o, spill_err *err);
/* Give up: close and remove the temporary. A zeroed or finished spill_file_out is a no-op. */
void spill_file_abort(spill_file_out *o);

#endif
