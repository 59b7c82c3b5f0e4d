/* The job config parser on hostile YAML: rm_config_read must either accept
 * the file or refuse it with a message, and what it accepts must survive
 * its own canonical dump (write, read back, same hash). The tail of the
 * input after a NUL byte is also tried as a --set override. */
#include "config.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t yaml_len = nul ? (size_t)(nul - data) : size;
    const char *path = fuzz_path(1, "job.yaml");
    fuzz_write(path, data, yaml_len);
    static rm_config cfg, again;
    rm_error err;
    if (rm_config_read(path, &cfg, &err) == RM_OK) {
        if (nul) {
            size_t set_len = size - yaml_len - 1;
            char *set = malloc(set_len + 1);
            memcpy(set, nul + 1, set_len);
            set[set_len] = '\0';
            rm_config_set(&cfg, set, &err);
            free(set);
        }
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        rm_config_write(&cfg, mem);
        fclose(mem);
        const char *dump = fuzz_path(2, "dump.yaml");
        fuzz_write(dump, text, len);
        free(text);
        if (rm_config_read(dump, &again, &err) != RM_OK) {
            fprintf(stderr, "the canonical dump does not read back: %s\n", err.msg);
            abort();
        }
        if (rm_config_hash(&again) != rm_config_hash(&cfg) ||
            rm_config_training_hash(&again) != rm_config_training_hash(&cfg)) {
            fprintf(stderr, "the canonical dump reads back as another config\n");
            abort();
        }
    }
    return 0;
}
