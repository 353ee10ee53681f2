/**
 * Sets `key` to `value` as the newest entry of an insertion-ordered Map kept to at most
 * `max` entries: when it is full, the oldest entry goes first. Answers the entry that was
 * dropped, for callers that must do something with it, or `undefined`.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): [K, V] | undefined {
  // Setting a key that is there moves it to the newest end, and takes no room.
  map.delete(key);
  let dropped: [K, V] | undefined;
  if (map.size >= max) {
    const oldest = map.entries().next();
    if (!oldest.done) {
      dropped = oldest.value;
      map.delete(dropped[0]);
    }
  }
  map.set(key, value);
  return dropped;
}
