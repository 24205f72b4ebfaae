// `npm run docs:tools`: rewrites docs/tools.md from the tools' schemas and docs/tools/*.md.
import { writeFile } from 'node:fs/promises';
import { renderToolsDoc, TOOLS_DOC } from './tools-doc.js';

await writeFile(TOOLS_DOC, await renderToolsDoc('.'));
