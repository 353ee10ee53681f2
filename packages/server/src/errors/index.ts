/**
 * Errors: {@link FlowgateError}, the one error Flowgate throws on purpose, and its
 * rendering as an RFC 9457 problem document.
 */
export { FlowgateError, isFlowgateError, type FieldProblem, type FlowgateErrorOptions } from './flowgate-error.js';
export { toProblem, PROBLEM_CONTENT_TYPE } from './problem.js';
export { shapeProblems, pointerToField, type DocumentProblem } from './schema-problems.js';
