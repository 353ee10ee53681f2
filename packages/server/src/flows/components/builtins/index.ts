/** The components every Flowgate has, whatever custom ones are loaded besides. */
import type { Component } from '../component.js';
import { branchComponent } from './branch.js';
import { delayComponent } from './delay.js';
import { filterComponent } from './filter.js';
import { httpComponent } from './http.js';
import { publishComponent } from './publish.js';
import { respondComponent } from './respond.js';
import { transformComponent } from './transform.js';
import { waitForEventComponent } from './wait-for-event.js';

export { branchComponent, delayComponent, filterComponent, httpComponent, publishComponent, respondComponent, transformComponent, waitForEventComponent };
export { subflowComponent, type ChildExecution, type SubflowConfig, type Subflows } from './subflow.js';
export { eventWaitKey, type WaitForEventConfig } from './wait-for-event.js';
export type { BranchConfig } from './branch.js';
export type { DelayConfig } from './delay.js';
export type { FilterConfig } from './filter.js';
export type { HttpConfig } from './http.js';
export type { PublishConfig } from './publish.js';
export type { RespondConfig } from './respond.js';
export type { TransformConfig } from './transform.js';

/** The built-in components that need nothing of the engine, to register in a `ComponentRegistry`; `subflow` is built with the engine it starts children on. */
export function builtinComponents(): Component[] {
  return [httpComponent, transformComponent, filterComponent, branchComponent, delayComponent, publishComponent, respondComponent, waitForEventComponent];
}
