/* A hardware profile JSON (policies/profile.c: spill_profile_load), written back out when accepted. */
#include "fuzz.h"
#include "spill_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_profile p;
    spill_err err;
    if (spill_profile_load(fuzz_file("profile.json", data, size), &p, &err) == 0)
        spill_profile_write(&p, fuzz_null());
    else
        FUZZ_CHECK(err.msg[0]);
    return 0;
}
