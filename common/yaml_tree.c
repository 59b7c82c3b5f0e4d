#include "yaml_tree.h"

#include "fsutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct build_state {
    rm_yaml_doc *doc;
    const char *origin;
    rm_error *err;
    const char *text; /* the input, to say what is at an error */
    size_t len;
} build_state;

static rm_yaml_node *node_new(build_state *st, rm_yaml_kind kind, yaml_mark_t mark)
{
    rm_yaml_doc *doc = st->doc;
    if (doc->n_nodes >= doc->max_nodes) {
        rm_fail(st->err, "%s:%zu:%zu: document has more than %zu nodes", st->origin, mark.line + 1,
                mark.column + 1, doc->max_nodes);
        return NULL;
    }
    if (doc->n_nodes == doc->cap_nodes) {
        size_t cap = doc->cap_nodes ? 2 * doc->cap_nodes : 64;
        rm_yaml_node **grown = realloc(doc->nodes, cap * sizeof *grown);
        if (!grown) {
            rm_fail(st->err, "%s: out of memory", st->origin);
            return NULL;
        }
        doc->nodes = grown;
        doc->cap_nodes = cap;
    }
    rm_yaml_node *n = calloc(1, sizeof *n);
    if (!n) {
        rm_fail(st->err, "%s: out of memory", st->origin);
        return NULL;
    }
    doc->nodes[doc->n_nodes++] = n;
    n->kind = kind;
    n->line = (int)mark.line + 1;
    n->col = (int)mark.column + 1;
    return n;
}

static int node_append(build_state *st, rm_yaml_node *parent, rm_yaml_node *key, rm_yaml_node *item)
{
    rm_yaml_node **items = realloc(parent->items, (parent->count + 1) * sizeof *items);
    if (!items)
        return rm_fail(st->err, "%s: out of memory", st->origin);
    parent->items = items;
    if (parent->kind == RM_YAML_MAPPING) {
        rm_yaml_node **keys = realloc(parent->keys, (parent->count + 1) * sizeof *keys);
        if (!keys)
            return rm_fail(st->err, "%s: out of memory", st->origin);
        parent->keys = keys;
        parent->keys[parent->count] = key;
    }
    parent->items[parent->count++] = item;
    return RM_OK;
}

static int next_event(build_state *st, yaml_parser_t *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(p, ev))
        return RM_OK;
    yaml_mark_t m = p->problem_mark;
    /* the most common cause of all, said in words */
    int tab = st->text && m.index < st->len && st->text[m.index] == '\t';
    return rm_fail(st->err, "%s:%zu:%zu: invalid YAML: %s%s%s%s%s", st->origin, m.line + 1, m.column + 1,
                   tab ? "a tab character: YAML indents with spaces, never tabs (" : "",
                   p->problem ? p->problem : "parse error", p->context ? " " : "", p->context ? p->context : "",
                   tab ? ")" : "");
}

/* Parses one node whose first event is `ev` (consumed here). */
static int parse_node(build_state *st, yaml_parser_t *p, yaml_event_t *ev, int depth, rm_yaml_node **out)
{
    yaml_mark_t mark = ev->start_mark;
    if (depth > RM_YAML_MAX_DEPTH) {
        yaml_event_delete(ev);
        return rm_fail(st->err, "%s:%zu:%zu: nesting deeper than %d levels", st->origin, mark.line + 1,
                       mark.column + 1, RM_YAML_MAX_DEPTH);
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        yaml_event_delete(ev);
        return rm_fail(st->err, "%s:%zu:%zu: YAML aliases (*name) are not accepted in a job config; write the value out",
                       st->origin, mark.line + 1, mark.column + 1);
    case YAML_SCALAR_EVENT: {
        rm_yaml_node *n = node_new(st, RM_YAML_SCALAR, mark);
        if (!n) {
            yaml_event_delete(ev);
            return RM_ERR;
        }
        size_t length = ev->data.scalar.length;
        n->value = strndup((const char *)ev->data.scalar.value, length);
        n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        yaml_event_delete(ev);
        if (!n->value)
            return rm_fail(st->err, "%s: out of memory", st->origin);
        if (strlen(n->value) != length)
            return rm_fail(st->err, "%s:%d:%d: value contains a NUL character", st->origin, n->line, n->col);
        *out = n;
        return RM_OK;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
        yaml_event_delete(ev);
        rm_yaml_node *n = node_new(st, is_map ? RM_YAML_MAPPING : RM_YAML_SEQUENCE, mark);
        if (!n)
            return RM_ERR;
        for (;;) {
            yaml_event_t child;
            if (next_event(st, p, &child) != RM_OK)
                return RM_ERR;
            if (child.type == end) {
                yaml_event_delete(&child);
                break;
            }
            rm_yaml_node *key = NULL, *item = NULL;
            if (is_map) {
                if (parse_node(st, p, &child, depth + 1, &key) != RM_OK)
                    return RM_ERR;
                if (key->kind != RM_YAML_SCALAR)
                    return rm_fail(st->err, "%s:%d:%d: mapping keys must be plain names", st->origin, key->line,
                                   key->col);
                for (size_t i = 0; i < n->count; i++)
                    if (strcmp(n->keys[i]->value, key->value) == 0)
                        return rm_fail(st->err, "%s:%d:%d: key '%s' appears twice (first at line %d)", st->origin,
                                       key->line, key->col, key->value, n->keys[i]->line);
                if (next_event(st, p, &child) != RM_OK)
                    return RM_ERR;
            }
            if (parse_node(st, p, &child, depth + 1, &item) != RM_OK)
                return RM_ERR;
            if (node_append(st, n, key, item) != RM_OK)
                return RM_ERR;
        }
        *out = n;
        return RM_OK;
    }
    default:
        yaml_event_delete(ev);
        return rm_fail(st->err, "%s:%zu:%zu: unexpected YAML structure", st->origin, mark.line + 1,
                       mark.column + 1);
    }
}

static int parse_limited(const char *text, size_t len, const char *origin, size_t max_nodes, rm_yaml_doc *doc,
                         rm_error *err)
{
    memset(doc, 0, sizeof *doc);
    doc->max_nodes = max_nodes;
    if (memchr(text, '\0', len))
        return rm_fail(err, "%s: not a text file (contains NUL bytes)", origin);

    build_state st = {doc, origin, err, text, len};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return rm_fail(err, "%s: cannot initialise the YAML parser", origin);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    int rc = RM_ERR;
    int documents = 0;
    yaml_event_t ev;
    for (;;) {
        if (next_event(&st, &parser, &ev) != RM_OK)
            goto done;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_mark_t m = ev.start_mark;
            yaml_event_delete(&ev);
            if (++documents > 1) {
                rm_fail(err, "%s:%zu:%zu: more than one YAML document; a job config is one", origin, m.line + 1,
                        m.column + 1);
                goto done;
            }
            continue;
        }
        if (parse_node(&st, &parser, &ev, 0, &doc->root) != RM_OK)
            goto done;
    }
    rc = RM_OK;
done:
    yaml_parser_delete(&parser);
    return rc;
}

int rm_yaml_parse(const char *text, size_t len, const char *origin, rm_yaml_doc *doc, rm_error *err)
{
    memset(doc, 0, sizeof *doc);
    if (len > RM_YAML_MAX_BYTES)
        return rm_fail(err, "%s: %zu bytes is too large for a job config (limit %u)", origin, len,
                       RM_YAML_MAX_BYTES);
    return parse_limited(text, len, origin, RM_YAML_MAX_NODES, doc, err);
}

int rm_yaml_parse_file_limits(const char *path, size_t max_bytes, size_t max_nodes, rm_yaml_doc *doc, rm_error *err)
{
    memset(doc, 0, sizeof *doc);
    char too_large[64];
    snprintf(too_large, sizeof too_large, "larger than %zu bytes", max_bytes);
    size_t len;
    char *buf = rm_read_file(path, max_bytes, too_large, &len, err);
    if (!buf)
        return RM_ERR;
    int rc = parse_limited(buf, len, path, max_nodes, doc, err);
    free(buf);
    return rc;
}

int rm_yaml_parse_file(const char *path, rm_yaml_doc *doc, rm_error *err)
{
    return rm_yaml_parse_file_limits(path, RM_YAML_MAX_BYTES, RM_YAML_MAX_NODES, doc, err);
}

void rm_yaml_free(rm_yaml_doc *doc)
{
    for (size_t i = 0; i < doc->n_nodes; i++) {
        free(doc->nodes[i]->value);
        free(doc->nodes[i]->items);
        free(doc->nodes[i]->keys);
        free(doc->nodes[i]);
    }
    free(doc->nodes);
    memset(doc, 0, sizeof *doc);
}

rm_yaml_node *rm_yaml_get(const rm_yaml_node *map, const char *key)
{
    if (!map || map->kind != RM_YAML_MAPPING)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->keys[i]->value, key) == 0)
            return map->items[i];
    return NULL;
}

/* Decodes one UTF-8 sequence at s; returns its length (0: invalid,
 * overlong, a surrogate or beyond U+10FFFF). */
static int utf8_next(const unsigned char *s, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || s[0] >= 0xf8)
        return 0;
    uint32_t v = s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

int rm_yaml_write_quoted(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int bad = 0;
    fputc('"', out);
    while (*p) {
        uint32_t cp;
        int len = utf8_next(p, &cp);
        if (!len) {
            bad = 1;
            fprintf(out, "\\u%04x", (unsigned)*p++);
            continue;
        }
        if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (int)cp);
        else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
                 cp == 0xfffe || cp == 0xffff)
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, (size_t)len, out);
        p += len;
    }
    fputc('"', out);
    return bad ? RM_ERR : RM_OK;
}
