import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Component } from './component.js';

/** The same rule as `defineComponent`, checked again: a module need not have called it. */
const NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/**
 * Loads the custom components of a folder: every `*.js` and `*.mjs` file directly in it
 * (not in sub-folders), in name order, each exporting one component as its default export
 * (or as `component`):
 *
 * ```ts
 * export default defineComponent({ name: 'crm-lookup', configSchema: { type: 'object' }, async run({ input, config, context }) { … } });
 * ```
 *
 * (`defineComponent` comes from this module's folder, `flows/components`; it checks the
 * name and types the config. A plain object of the same shape loads as well.)
 *
 * Components written in TypeScript must be compiled to JavaScript first (`tsc`): Flowgate
 * imports the folder as it is, and Node does not run `.ts` files. A file that does not
 * load or does not export a valid component stops the start, with an error naming the
 * file and what is wrong, rather than leaving flows that need it to fail later.
 */
export async function loadCustomComponents(dir: string): Promise<Component[]> {
  const folder = resolve(dir);
  let files: string[];
  try {
    files = (await readdir(folder, { withFileTypes: true })).filter((entry) => entry.isFile() && /\.(m?js)$/.test(entry.name)).map((entry) => entry.name);
  } catch (error) {
    throw new Error(`The custom components folder ${folder} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const components: Component[] = [];
  const seen = new Map<string, string>();
  for (const file of files.sort()) {
    const path = join(folder, file);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`Custom component ${path} does not load: ${(error as Error).message}`, { cause: error });
    }
    const problem = componentProblem(module.default ?? module.component);
    if (problem) throw new Error(`Custom component ${path} ${problem}.`);
    const component = (module.default ?? module.component) as Component;
    const earlier = seen.get(component.name);
    if (earlier) throw new Error(`Custom component ${path} is called "${component.name}", like ${earlier}.`);
    seen.set(component.name, path);
    components.push(component);
  }
  return components;
}

/** What is wrong with a module's export, or undefined when it is a component. */
function componentProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'exports no component: it needs `export default defineComponent({ name, configSchema, run })`';
  const { name, run, configSchema, description } = value as Record<string, unknown>;
  if (typeof name !== 'string' || !NAME.test(name)) return `has a name that is not lower-case letters, digits, - and _ starting with a letter: ${JSON.stringify(name)}`;
  if (typeof run !== 'function') return `("${name}") has no run function`;
  if (typeof configSchema !== 'object' || configSchema === null || Array.isArray(configSchema)) return `("${name}") has no configSchema object (a JSON Schema for its config)`;
  if (description !== undefined && typeof description !== 'string') return `("${name}") has a description that is not a string`;
  return undefined;
}
