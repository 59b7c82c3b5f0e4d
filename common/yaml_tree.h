/* A small, bounded YAML document tree built with libyaml's event parser.
 * Every node keeps its line and column so callers can point at the exact
 * spot in the user's file. Aliases are refused (no billion-laughs), and
 * depth, node count and input size are capped. */
#ifndef RINGMASTER_YAML_TREE_H
#define RINGMASTER_YAML_TREE_H

#include "error.h"

#include <stddef.h>
#include <stdio.h>

#define RM_YAML_MAX_BYTES (1u << 20)
#define RM_YAML_MAX_NODES 4096
#define RM_YAML_MAX_DEPTH 16

typedef enum { RM_YAML_SCALAR, RM_YAML_SEQUENCE, RM_YAML_MAPPING } rm_yaml_kind;

typedef struct rm_yaml_node {
    rm_yaml_kind kind;
    int line, col;           /* 1-based */
    char *value;             /* scalar text (NUL-terminated) */
    int quoted;              /* scalar was written in quotes */
    /* Sequence: items. Mapping: keys[i] (scalar nodes) map to items[i]. */
    struct rm_yaml_node **items;
    struct rm_yaml_node **keys;
    size_t count;
} rm_yaml_node;

typedef struct rm_yaml_doc {
    rm_yaml_node *root;      /* NULL for an empty document */
    rm_yaml_node **nodes;    /* all nodes, owned here */
    size_t n_nodes, cap_nodes, max_nodes;
} rm_yaml_doc;

/* Parses a whole buffer. `origin` names it in messages ("job.yaml",
 * "--set train.lr"). On error err holds "origin:line:col: what". The caller
 * frees doc with rm_yaml_free, also after an error. */
int rm_yaml_parse(const char *text, size_t len, const char *origin, rm_yaml_doc *doc, rm_error *err);

/* Reads a file (refusing huge or binary ones) and parses it. */
int rm_yaml_parse_file(const char *path, rm_yaml_doc *doc, rm_error *err);

/* The same with other limits, for machine-written documents such as
 * checkpoint manifests that grow with the number of workers. */
int rm_yaml_parse_file_limits(const char *path, size_t max_bytes, size_t max_nodes, rm_yaml_doc *doc, rm_error *err);

void rm_yaml_free(rm_yaml_doc *doc);

/* Mapping lookup by key; NULL when absent. */
rm_yaml_node *rm_yaml_get(const rm_yaml_node *map, const char *key);

/* Writes s as a double-quoted scalar that reads back as exactly s, in YAML
 * (libyaml) and in JSON alike: quotes and backslashes escaped; control
 * characters, DEL, C1 controls, the line breaks YAML adds to JSON's (NEL,
 * U+2028, U+2029), the BOM and U+FFFE/U+FFFF written as \u escapes; other
 * UTF-8 as is. A byte that is not valid UTF-8 is written as \u00XX (which
 * reads back as another string) and makes the result RM_ERR. */
int rm_yaml_write_quoted(FILE *out, const char *s);

#endif
