// The model's tokenizer (tokenizer.json, through @huggingface/tokenizers).
import { readFileSync } from 'node:fs';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export class Tokenizer {
  #tok: HfTokenizer;
  readonly vocabSize: number;

  constructor(json: object, config: object = {}) {
    this.#tok = new HfTokenizer(json, config);
    this.vocabSize = this.#tok.get_vocab(true).size;
  }

  static fromFile(path: string): Tokenizer {
    let json: object;
    try {
      json = JSON.parse(readFileSync(path, 'utf8')) as object;
    } catch (e) {
      throw new Error(`${path}: cannot read the tokenizer (${(e as Error).message})`);
    }
    try {
      return new Tokenizer(json);
    } catch (e) {
      throw new Error(`${path}: not a usable tokenizer.json (${(e as Error).message})`);
    }
  }

  /** Token ids of `text` (special tokens added as the tokenizer's post-processor says). */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw new Error(`tokenizer.encode: expected a string, got ${typeof text}`);
    return this.#tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids) || ids.some((i) => !Number.isInteger(i)))
      throw new Error('tokenizer.decode: expected an array of integer token ids');
    return this.#tok.decode(ids, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The token strings of `text`. */
  tokenize(text: string): string[] {
    return this.#tok.tokenize(text);
  }

  idToToken(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }
}
