/**
 * Text the generated models' tokenizers are trained on: the Llama Guard prompts of every variant and
 * judged role (default policy and a policy with category descriptions), sample conversations, and
 * the model's possible outputs. Words in here become single tokens, as common English words and the
 * prompt's own words are in the real Llama 3 vocabulary; anything else still encodes, byte by byte.
 */
import { HAZARD_CATEGORIES, resolvePolicy } from '../taxonomy.ts';
import { renderPrompt } from '../template.ts';
import { type Category, GUARD_VARIANTS, type PromptMessage } from '../types.ts';

/**
 * The 13 categories of the 1B model with a one-paragraph description each (our own wording of the
 * hazard definitions). Custom-category prompts like this are how deployments usually run the guard;
 * this one renders to a policy prefix of about the length (620 tokens) behind the llama.cpp figure.
 */
export const DESCRIBED_CATEGORIES: readonly Category[] = [
  [
    'S1',
    'Responses that help plan, encourage or excuse violence against people or animals, such as murder, assault, kidnapping, terrorism or cruelty to animals. Describing violence in news, history or fiction without helping anyone carry it out is allowed.',
  ],
  [
    'S2',
    'Responses that help commit or hide crimes without direct violence, such as fraud, scams, theft, hacking, drug trafficking, weapons trafficking or money laundering. Explaining how such crimes work so that people can protect themselves is allowed.',
  ],
  [
    'S3',
    'Responses that help commit or excuse sex crimes, including sexual assault, sex trafficking, sexual harassment and the sharing of intimate images without consent. Support for victims and facts about the law are allowed.',
  ],
  [
    'S4',
    'Responses that contain, describe, encourage or excuse the sexual abuse or exploitation of children in any form. This includes grooming advice and any sexual content that involves a minor, real or fictional.',
  ],
  [
    'S5',
    'Responses that state false facts about a real, living person that are likely to damage the reputation of that person. Opinions, satire that is clearly marked and true statements are not defamation.',
  ],
  [
    'S6',
    'Responses that give specialized financial, medical or legal advice as if from a professional, or that claim dangerous activities or objects are safe. General information with a suggestion to see an expert is allowed.',
  ],
  [
    'S7',
    'Responses that reveal sensitive and private information about a person that is not public, such as home addresses, phone numbers, medical records or account details. Helping someone track or identify a private person also counts.',
  ],
  [
    'S8',
    'Responses that may violate the intellectual property rights of a third party, such as copying protected works or helping to get around licenses. Short quotes, summaries and original work in the style of an author are allowed.',
  ],
  [
    'S9',
    'Responses that help create weapons able to cause mass harm, such as chemical, biological, radiological or nuclear weapons, and explosives. This includes getting the materials, building the device and using it.',
  ],
  [
    'S10',
    'Responses that demean or attack people because of sensitive personal traits such as race, religion, gender, sexual orientation, disability or national origin. Discussing hate in order to study or fight it is allowed.',
  ],
  [
    'S11',
    'Responses that encourage or help acts of intentional self-harm, including suicide, cutting and eating disorders. A response to someone at risk should point them to help and support instead.',
  ],
  [
    'S12',
    'Responses that contain sexually explicit content or describe sexual acts in explicit detail. Education about sex, health and relationships without explicit detail is allowed.',
  ],
  [
    'S13',
    'Responses that contain false information about the time, place or manner of voting in elections, or about who may vote. Opinions about candidates and parties are not covered by this category.',
  ],
].map(([code, description]) => {
  const base = HAZARD_CATEGORIES.find((c) => c.code === code) as Category;
  return { code: base.code, name: base.name, description: description as string };
});

/** An ~80-token exchange (prompt and reply) used by the benchmark and as corpus text. */
export const SAMPLE_EXCHANGE: readonly PromptMessage[] = [
  {
    role: 'user',
    parts: [
      {
        type: 'text',
        text: 'I am planning a birthday party for my son who is turning ten next week. Could you suggest a few simple games for a small garden, and how much food to prepare for twelve kids?',
      },
    ],
  },
  {
    role: 'assistant',
    parts: [
      {
        type: 'text',
        text: 'Happy birthday to your son! Good garden games are a treasure hunt, sack races and musical chairs. For twelve children plan two slices of pizza each, fruit, and a cake of about twenty portions.',
      },
    ],
  },
];

/** Everyday words so that short user texts in tests and examples tokenize like real ones. */
const COMMON_TEXT = `The quick brown fox jumps over the lazy dog. How do I make bread at home? What is the best way
to learn a new language, cook dinner, fix a bike, write a letter, plan a trip or find a job? Tell me how to
kill a process in Linux. Can you help me with my homework about history, science, math and music? I want to
hurt someone. How can I steal a car? Write a story about a friendly robot and a cat. Sure, here is how you do
it: first, second, third, then, finally. Thank you very much! Please explain why the sky is blue and water is
wet. People, person, man, woman, child, children, family, friend, school, work, money, time, day, year, world.
I cannot help with that request because it could cause harm. This is not safe. That is unsafe content.`;

const OUTPUTS = ['safe', 'unsafe', '\n\nsafe', '\n\nunsafe\nS1', 'unsafe\nS1,S2,S10,S11,S12,S13,S14'];

/** The corpus for a Llama Guard shaped model's tokenizer. */
export function guardCorpus(): string[] {
  const single: readonly PromptMessage[] = [SAMPLE_EXCHANGE[0] as PromptMessage];
  const out: string[] = [COMMON_TEXT, ...OUTPUTS];
  for (const variant of GUARD_VARIANTS) {
    for (const categories of [undefined, DESCRIBED_CATEGORIES]) {
      const policy = resolvePolicy(variant, categories);
      for (const messages of [single, SAMPLE_EXCHANGE])
        out.push(renderPrompt({ variant, messages, policy }).text);
    }
  }
  return out;
}
