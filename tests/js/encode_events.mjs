// Loads a checkpoint's tokenizer.json with @huggingface/tokenizers (the tokenizer of transformers.js)
// and encodes event texts. Usage: node encode_events.mjs FOLDER TEXTS.json > IDS.json
// TEXTS.json is a list of strings; the output is {"ids": [[...], ...], "decoded": [...]}.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const [folder, textsFile] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8")),
  JSON.parse(readFileSync(join(folder, "tokenizer_config.json"), "utf8")),
);
const texts = JSON.parse(readFileSync(textsFile, "utf8"));
const ids = texts.map((text) => tokenizer.encode(text).ids);
const decoded = ids.map((row) => tokenizer.decode(row, { skip_special_tokens: true }));
process.stdout.write(JSON.stringify({ ids, decoded }));
