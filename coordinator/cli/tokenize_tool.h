#ifndef RINGMASTER_TOKENIZE_TOOL_H
#define RINGMASTER_TOKENIZE_TOOL_H

/* `ringmaster data tokenize --tokenizer NAME [--vocab-dir D] [--decode] FILE`;
 * argv starts after "tokenize". */
int rm_tokenize_tool_main(int argc, char **argv);

#endif
