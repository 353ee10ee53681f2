/** A page of rows and the cursor that fetches the next one. */
export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** Page size limits shared by every list endpoint. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/**
 * Turns rows fetched with `limit + 1` into a page: the extra row, when present, proves
 * there is a next page, whose cursor is the last returned row's key.
 */
export function toPage<R, T>(rows: R[], limit: number, key: (row: R) => string, map: (row: R) => T): Page<T> {
  const hasMore = rows.length > limit;
  const kept = hasMore ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  return { items: kept.map(map), next_cursor: hasMore && last !== undefined ? key(last) : null };
}

/** Clamps a requested page size. */
export function pageSize(limit: number | undefined): number {
  return Math.min(Math.max(limit ?? DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE);
}
