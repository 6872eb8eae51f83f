// The handheld's own store (IndexedDB): actions waiting to be sent (each with its client id,
// so the server applies it exactly once however often it is sent), online calls whose answer
// was lost (resent with the same Idempotency-Key), the last roster of each chosen point, and
// the slips and citations made on this handheld. Every action records the warden it belongs
// to. It outlives a closed app and a restarted phone.

const DB = "iparking-warden";
let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 2);
      req.onupgradeneeded = () => {
        const db = req.result;
        // queue: actions for /v1/warden/sync; pending: online calls whose answer was lost,
        // resent with the same Idempotency-Key; rosters; done: answered actions and slips.
        for (const [name, keyPath] of [["queue", "id"], ["pending", "id"], ["rosters", "point_code"], ["done", "id"]]) {
          if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, { keyPath });
        }
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return opening;
}

async function run(store, mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const result = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const put = (store, value) => run(store, "readwrite", (s) => s.put(value));
export const remove = (store, key) => run(store, "readwrite", (s) => s.delete(key));
export const get = (store, key) => run(store, "readonly", (s) => s.get(key));
export const all = (store) => run(store, "readonly", (s) => s.getAll());
export const clear = (store) => run(store, "readwrite", (s) => s.clear());

/** A client id for an action (a UUID v4 from the browser's random source). */
export function clientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
