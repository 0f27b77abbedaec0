// Turning user inputs (text, batches, ids, masks) into rows, and rows into one left-padded
// batch with attention_mask and position_ids derived from the padding.
import type { Tokenizer } from './tokenizer.js';

export type TraceInput =
  | string
  | string[]
  | number[]
  | number[][]
  | { inputIds: number[] | number[][]; attentionMask?: number[] | number[][] };

export interface Row {
  ids: number[];
  mask: number[];
}

function isIdRow(x: unknown): x is number[] {
  if (!Array.isArray(x)) return false;
  for (let i = 0; i < x.length; i++) if (typeof x[i] !== 'number') return false;
  return true;
}

export function toRows(input: TraceInput, tok: Tokenizer, vocabSize: number): Row[] {
  let rows: Row[];
  if (typeof input === 'string') rows = [row(tok.encode(input))];
  else if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'string'))
    rows = (input as string[]).map((s) => row(tok.encode(s)));
  else if (isIdRow(input) && input.length > 0) rows = [row(input)];
  else if (Array.isArray(input) && input.length > 0 && input.every(isIdRow)) rows = (input as number[][]).map(row);
  else if (input && typeof input === 'object' && !Array.isArray(input) && 'inputIds' in input) {
    const ids = isIdRow(input.inputIds) ? [input.inputIds] : input.inputIds;
    const masks = input.attentionMask === undefined ? undefined : isIdRow(input.attentionMask) ? [input.attentionMask] : input.attentionMask;
    if (!Array.isArray(ids) || !ids.every(isIdRow)) throw new Error('input: inputIds must be number[] or number[][]');
    if (masks && (masks.length !== ids.length || !masks.every((m, i) => isIdRow(m) && m.length === ids[i].length)))
      throw new Error('input: attentionMask must have the shape of inputIds');
    rows = ids.map((r, i) => ({ ids: r, mask: masks ? masks[i] : r.map(() => 1) }));
  } else {
    throw new Error('input must be a string, an array of strings, token ids (number[] or number[][]), or { inputIds, attentionMask }');
  }
  for (let i = 0; i < rows.length; i++) {
    const { ids, mask } = rows[i];
    if (ids.length === 0) throw new Error(`input row ${i} is empty (no tokens)`);
    for (let j = 0; j < ids.length; j++) {
      const t = ids[j];
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
        throw new Error(`input row ${i}, position ${j}: token id ${t} is outside the vocabulary [0, ${vocabSize})`);
    }
    for (let j = 0; j < mask.length; j++) {
      const m = mask[j];
      if (m !== 0 && m !== 1) throw new Error(`input row ${i}, position ${j}: attention mask values must be 0 or 1, got ${m}`);
    }
  }
  return rows;
}

function row(ids: number[]): Row {
  return { ids, mask: new Array<number>(ids.length).fill(1) };
}

export interface Batch {
  batch: number;
  seq: number;
  ids: Int32Array;
  mask: Int32Array;
  pos: Int32Array;
}

/** Left-pads rows to one length; position ids count real tokens (cumsum(mask) - 1, min 0). */
export function makeBatch(rows: Row[], padId: number): Batch {
  let seq = 0;
  for (const r of rows) seq = Math.max(seq, r.ids.length);
  const batch = rows.length;
  // Int32Array: token ids and positions fit, and no BigInt per value (the native side widens)
  const ids = new Int32Array(batch * seq);
  const mask = new Int32Array(batch * seq);
  const pos = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const r = rows[b];
    const off = seq - r.ids.length;
    let count = 0;
    for (let s = 0; s < seq; s++) {
      const real = s >= off;
      const m = real ? r.mask[s - off] : 0;
      ids[b * seq + s] = real ? r.ids[s - off] : padId;
      mask[b * seq + s] = m;
      count += m;
      pos[b * seq + s] = Math.max(count - 1, 0);
    }
  }
  return { batch, seq, ids, mask, pos };
}
