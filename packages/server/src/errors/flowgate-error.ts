import { errorSpec, type ErrorCode, type ErrorFamily } from '@flowgate/contracts';

/** One field-level problem, as reported in a problem document's `errors` member. */
export interface FieldProblem {
  readonly path: string;
  readonly message: string;
}

export interface FlowgateErrorOptions {
  /** Internal detail for logs; never sent to the caller. */
  readonly cause?: unknown;
  /** Headers the answer must carry (`WWW-Authenticate`, `Retry-After`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Field-level validation problems. */
  readonly errors?: readonly FieldProblem[];
  /** Extra public members of the problem document. */
  readonly extensions?: Readonly<Record<string, unknown>>;
}

/**
 * The one error type Flowgate throws on purpose. Its `code` is a literal union from the
 * catalogue, so a `switch (err.code)` narrows; its message (`detail`) is safe to show
 * the caller, and any sensitive detail goes in `cause`.
 */
export class FlowgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly family: ErrorFamily;
  readonly headers: Readonly<Record<string, string>>;
  readonly errors: readonly FieldProblem[] | undefined;
  readonly extensions: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, detail?: string, options: FlowgateErrorOptions = {}) {
    const spec = errorSpec(code);
    super(detail ?? spec.title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FlowgateError';
    this.code = code;
    this.status = spec.status;
    this.family = spec.family;
    this.headers = options.headers ?? {};
    this.errors = options.errors;
    this.extensions = options.extensions ?? {};
  }

  /** The safe, human detail shown to the caller. */
  get detail(): string {
    return this.message;
  }
}

/** Whether a value is a {@link FlowgateError}, optionally of a given code. */
export function isFlowgateError(value: unknown, code?: ErrorCode): value is FlowgateError {
  return value instanceof FlowgateError && (code === undefined || value.code === code);
}
