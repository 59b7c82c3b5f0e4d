// Encodes a file with the two reference GPT-2 encoders, for
// tests/integration/gpt2_tokenizer.sh: gpt-3-encoder (OpenAI's encoder.py
// ported to JS) and js-tiktoken's gpt2 encoding. Writes their ids
// (space-separated), the text as they read it (the file decoded as UTF-8
// by TextDecoder, BOM kept, invalid bytes as U+FFFD) and, on stdout, each
// encoder's time.
//
//   node reference_encode.js FILE OUT_DIR   (NODE_PATH: the packages)
'use strict';
const fs = require('fs');
const [file, outDir] = process.argv.slice(2);
const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(fs.readFileSync(file));
fs.writeFileSync(`${outDir}/repaired.txt`, Buffer.from(text, 'utf8'));
const mb = Buffer.byteLength(text, 'utf8') / 1e6;

// gpt-3-encoder's encode() grows its result with concat, quadratic in the
// tokens of one call, so it gets the text in pieces cut where the GPT-2
// pattern always ends a pre-token: after a "\n" that follows a non-space
// and precedes one (that "\n" is a pre-token of its own either way), or
// between a letter and a digit (no alternative takes both).
const gpt3 = require('gpt-3-encoder');
const pieces = [];
let start = 0;
const letter = /\p{L}/u, digit = /\p{N}/u;
for (let i = 1; i + 1 < text.length; i++) {
  if (i - start < 2048)
    continue;
  if (text[i] === '\n' && /\S/.test(text[i - 1]) && /\S/.test(text[i + 1])) {
    pieces.push(text.slice(start, i + 1));
    start = i + 1;
  } else if (letter.test(text[i]) && digit.test(text[i + 1])) {
    pieces.push(text.slice(start, i + 1));
    start = i + 1;
  }
}
pieces.push(text.slice(start));
let t0 = process.hrtime.bigint();
const gpt3Ids = [];
for (const p of pieces) for (const id of gpt3.encode(p)) gpt3Ids.push(id);
const gpt3S = Number(process.hrtime.bigint() - t0) / 1e9;
fs.writeFileSync(`${outDir}/gpt3.ids`, gpt3Ids.join(' ') + '\n');

const { getEncoding } = require('js-tiktoken');
const enc = getEncoding('gpt2');
t0 = process.hrtime.bigint();
const tiktokenIds = enc.encode(text, [], []); // "<|endoftext|>" is plain text, as in gpt-3-encoder
const tiktokenS = Number(process.hrtime.bigint() - t0) / 1e9;
fs.writeFileSync(`${outDir}/tiktoken.ids`, tiktokenIds.join(' ') + '\n');

console.log(`gpt-3-encoder ${gpt3S.toFixed(3)} s ${(mb / gpt3S).toFixed(2)} MB/s (${pieces.length} pieces)`);
console.log(`js-tiktoken ${tiktokenS.toFixed(3)} s ${(mb / tiktokenS).toFixed(2)} MB/s`);
