/*
 * A labelled set for search recall (issue 23): 60 field notes, each about one animal near one
 * of six cities (ten notes a city) eating one food, among sentences every note shares, and 30 questions whose answer is one
 * note (ten worded each way). The questions are worded three ways: with the note's own words, with other forms of
 * them (plurals, verb forms: what full-text search with 'simple' misses and trigram embeddings
 * catch), and by the food and place rather than the animal.
 */

import { seededRandom } from '../../harness/seeded-random.js';

const ANIMALS = ['fox', 'otter', 'heron', 'badger', 'falcon', 'lynx', 'beaver', 'walrus', 'gecko', 'moose', 'pelican', 'stoat'];
const PLURALS: Record<string, string> = { fox: 'foxes', lynx: 'lynxes', walrus: 'walruses', moose: 'moose' };
const CITIES = ['Lisbon', 'Oslo', 'Kyoto', 'Quito', 'Dakar', 'Hobart'];
const FOODS = ['berries', 'crabs', 'beetles', 'acorns', 'clams', 'mice', 'seeds', 'eels', 'figs', 'worms', 'mussels', 'grubs'];
const TIMES = ['at dawn', 'at dusk', 'in winter', 'after rain', 'at low tide', 'in spring'];
const FILLER = [
  'The weather during the survey was mild and the light was good.',
  'Volunteers recorded every sighting in the shared notebook.',
  'The team returned to the same spot on three consecutive days.',
  'Photographs were taken from a distance to avoid disturbing the animals.',
  'Local guides helped the observers find the best vantage points.',
  'Counts were checked twice before being entered into the database.',
  'Noise from traffic nearby made some observations harder.',
  'The survey route followed the river for most of its length.',
];

export interface LabelledDocument {
  source: string;
  text: string;
}

export interface LabelledQuery {
  query: string;
  /** The source of the one document that answers it. */
  answer: string;
  style: 'same words' | 'other forms' | 'by food and place';
}

export function labelledSet(): { documents: LabelledDocument[]; queries: LabelledQuery[] } {
  const next = seededRandom(23);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)] as T;
  const pairs = ANIMALS.flatMap((animal) => CITIES.map((city) => ({ animal, city })));
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [pairs[i], pairs[j]] = [pairs[j] as (typeof pairs)[number], pairs[i] as (typeof pairs)[number]];
  }
  const notes = pairs.slice(0, 60).map(({ animal, city }, i) => ({ animal, city, food: pick(FOODS), time: pick(TIMES), source: `notes/${String(i + 1).padStart(2, '0')}.md` }));
  const documents = notes.map((n) => ({
    source: n.source,
    text: [
      `# Field note ${n.source.slice(6, 8)}`,
      '',
      `${pick(FILLER)} ${pick(FILLER)} The ${n.animal} living near ${n.city} feeds mostly on ${n.food} ${n.time}. ` +
        `Observers counted ${2 + Math.floor(next() * 30)} of them. ${pick(FILLER)} ${pick(FILLER)}`,
    ].join('\n'),
  }));
  const plural = (animal: string) => PLURALS[animal] ?? `${animal}s`;
  const chosen = Array.from({ length: 30 }, (_, i) => notes[i * 2] as (typeof notes)[number]);
  const queries: LabelledQuery[] = chosen.map((n, i) => {
    if (i % 3 === 0) return { query: `${n.animal} near ${n.city} feeds on`, answer: n.source, style: 'same words' };
    if (i % 3 === 1) return { query: `what are ${plural(n.animal)} around ${n.city} feeding on`, answer: n.source, style: 'other forms' };
    return { query: `which animal eats ${n.food} in ${n.city}`, answer: n.source, style: 'by food and place' };
  });
  return { documents, queries };
}
