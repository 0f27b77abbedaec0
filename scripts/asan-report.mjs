// Reads AddressSanitizer logs (one file per process) and fails on invalid accesses anywhere
// and on leaks allocated through torchsight.node.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? '.cache/asan';
let errors = 0;
let ourLeaks = 0;
let otherLeaks = 0;
const files = readdirSync(dir).filter((f) => f.startsWith('asan'));
for (const f of files) {
  const text = readFileSync(join(dir, f), 'utf8');
  for (const block of text.split(/\n(?==+\n==\d+==ERROR|Direct leak|Indirect leak)/)) {
    if (/ERROR: AddressSanitizer/.test(block)) {
      errors++;
      console.log(`${f}: invalid access\n${block.slice(0, 3000)}`);
    } else if (/^(Direct|Indirect) leak/.test(block)) {
      if (block.includes('torchsight.node')) {
        ourLeaks++;
        console.log(`${f}: leak through torchsight.node\n${block.slice(0, 3000)}`);
      } else otherLeaks++;
    }
  }
}
console.log(`asan: ${files.length} process log(s); ${errors} invalid access(es); ${ourLeaks} leak(s) through torchsight.node; ${otherLeaks} other leak record(s) (node/V8/libtorch/python, not ours)`);
process.exit(errors || ourLeaks ? 1 : 0);
