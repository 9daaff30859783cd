#include "unicode.h"

#include <string.h>

int spill_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

int spill_utf8_valid_at(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    /* RFC 3629 table 3-7: the allowed second byte depends on the first */
    unsigned char lo = 0x80, hi = 0xBF;
    int l;
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if ((size_t)l > n || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return l;
}

int spill_utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = spill_utf8_valid_at(s + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

uint32_t spill_utf8_decode(const char *str, size_t n, int *len) {
    const unsigned char *s = (const unsigned char *)str;
    int l = spill_utf8_valid_at(str, n);
    *len = 1;
    if (l == 0) return 0xFFFD;
    *len = l;
    if (l == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> l);
    for (int i = 1; i < l; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

int spill_utf8_encode(uint32_t cp, char *o) {
    unsigned char *out = (unsigned char *)o;
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { out[0] = (unsigned char)(0xC0 | (cp >> 6)); out[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12)); out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18)); out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* How many bytes at s[0..n) form the longest prefix of some valid sequence (at least 1): the
 * "maximal subpart" that Unicode's recommended practice replaces by one U+FFFD. */
static int maximal_subpart(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    int l;
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) l = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) l = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    int k = 2;
    while (k < l && (size_t)k < n && (s[k] & 0xC0) == 0x80) k++;
    return k;
}

size_t spill_utf8_repair_into(const char *str, size_t n, spill_utf8_repair how, char *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int l = how == SPILL_UTF8_KEEP ? 1 : spill_utf8_valid_at(str + i, n - i);
        if (l > 0) {
            memcpy(out + o, s + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
            continue;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += how == SPILL_UTF8_PER_BYTE ? 1 : (size_t)maximal_subpart(s + i, n - i);
    }
    return o;
}

int spill_cp_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static const spill_uni_pair *find_pair(const spill_uni_pair *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].cp < cp) lo = mid + 1;
        else if (t[mid].cp > cp) hi = mid - 1;
        else return &t[mid];
    }
    return NULL;
}

static const spill_uni_seq *find_seq(const spill_uni_seq *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].cp < cp) lo = mid + 1;
        else if (t[mid].cp > cp) hi = mid - 1;
        else return &t[mid];
    }
    return NULL;
}

int spill_cp_lower(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    const spill_uni_pair *p = find_pair(spill_uni_lower, spill_uni_lower_count, cp);
    if (p) {
        out[0] = p->v;
        return 1;
    }
    const spill_uni_seq *m = find_seq(spill_uni_lower_multi, spill_uni_lower_multi_count, cp);
    if (m && m->len <= 3) {
        for (uint32_t i = 0; i < m->len; i++) out[i] = spill_uni_lower_multi_pool[m->off + i];
        return (int)m->len;
    }
    out[0] = cp;
    return 1;
}

int spill_cp_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    const spill_uni_pair *p = find_pair(spill_uni_ccc, spill_uni_ccc_count, cp);
    return p ? (int)p->v : 0;
}

/* ---- normalization (Unicode Standard Annex #15) ---- */
enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7, H_LCOUNT = 19, H_VCOUNT = 21,
       H_TCOUNT = 28, H_NCOUNT = H_VCOUNT * H_TCOUNT, H_SCOUNT = H_LCOUNT * H_NCOUNT };

static size_t decompose_one(uint32_t cp, int compat, uint32_t *out) {
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t s = cp - H_SBASE;
        out[0] = H_LBASE + s / H_NCOUNT;
        out[1] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT;
        if (s % H_TCOUNT == 0) return 2;
        out[2] = H_TBASE + s % H_TCOUNT;
        return 3;
    }
    const spill_uni_seq *d = cp < 0xA0 ? NULL
                           : compat ? find_seq(spill_uni_nfkd, spill_uni_nfkd_count, cp)
                                    : find_seq(spill_uni_nfd, spill_uni_nfd_count, cp);
    if (!d) {
        out[0] = cp;
        return 1;
    }
    const uint32_t *pool = compat ? spill_uni_nfkd_pool : spill_uni_nfd_pool;
    for (uint32_t i = 0; i < d->len; i++) out[i] = pool[d->off + i];
    return d->len;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    int lo = 0, hi = spill_uni_compose_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const spill_uni_triple *t = &spill_uni_compose[mid];
        if (t->a < a || (t->a == a && t->b < b)) lo = mid + 1;
        else if (t->a > a || t->b > b) hi = mid - 1;
        else return t->c;
    }
    return 0;
}

size_t spill_nf_room(spill_nf form, const uint32_t *cps, size_t n) {
    int compat = form == SPILL_NFKC || form == SPILL_NFKD;
    uint32_t tmp[32];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += decompose_one(cps[i], compat, tmp);
    return m;
}

size_t spill_nf_apply(spill_nf form, const uint32_t *cps, const uint32_t *tags, size_t n, uint32_t *out,
                      uint32_t *out_tag) {
    int compat = form == SPILL_NFKC || form == SPILL_NFKD;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = decompose_one(cps[i], compat, out + m);
        for (size_t j = 0; j < k; j++) out_tag[m + j] = tags[i];
        m += k;
    }
    /* canonical ordering: a stable sort of every run of non-starters by combining class */
    for (size_t i = 1; i < m; i++) {
        int c = spill_cp_ccc(out[i]);
        if (c == 0) continue;
        size_t j = i;
        while (j > 0) {
            int p = spill_cp_ccc(out[j - 1]);
            if (p <= c) break;
            uint32_t t = out[j - 1], tt = out_tag[j - 1];
            out[j - 1] = out[j], out_tag[j - 1] = out_tag[j];
            out[j] = t, out_tag[j] = tt;
            j--;
        }
    }
    if (form == SPILL_NFD || form == SPILL_NFKD || m == 0) return m;
    /* canonical composition: each character joins the last starter unless a character between
     * them has a combining class that blocks it (UAX #15, section 1.3) */
    size_t starter = 0, w = 1;
    uint32_t sch = out[0];
    int last = spill_cp_ccc(sch) ? 256 : 0;
    for (size_t i = 1; i < m; i++) {
        uint32_t ch = out[i];
        int cc = spill_cp_ccc(ch);
        uint32_t comp = compose_pair(sch, ch);
        if (comp && (last < cc || last == 0)) {
            out[starter] = comp;
            sch = comp;
            continue;
        }
        if (cc == 0) {
            starter = w;
            sch = ch;
        }
        last = cc;
        out[w] = ch;
        out_tag[w] = out_tag[i];
        w++;
    }
    return w;
}
