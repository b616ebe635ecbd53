"use strict";
// Netra's local Firestore emulator: the gRPC service and document tree of @firestore-emulator/server,
// with the parts the project relies on replaced here because upstream 0.3.15 gets them wrong:
//  - transactions: upstream hands every transaction the same dummy id and never checks anything, so two
//    concurrent read-modify-write transactions silently lose updates. Here read-write transactions take
//    per-document locks on read (others wait, like Firestore's pessimistic locking) and commit validates
//    the versions it read (ABORTED -> the client library retries).
//  - commits: upstream applies writes one by one (a failing precondition leaves earlier writes applied),
//    set() without merge merges instead of replacing, DELETE_FIELD is ignored, update_time preconditions
//    are ignored, nested field paths throw, and a server timestamp transform stops the following transforms.
//  - queries: upstream ignores cursors (start_at/start_after/end_at/end_before), offset, unary filters
//    (== None returned every document), the implicit __name__ order, and compares 1 < 2.5 as false.
// Listen (snapshot listeners) is still upstream's.
//
// Usage: node server.cjs --host 127.0.0.1 --port 0 [--watch-stdin]
// Prints one JSON line {"listening": true, "host": ..., "port": N} once bound.

const crypto = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const { FirestoreServer } = require("@firestore-emulator/server");
const v1 = require("@firestore-emulator/proto/dist/google/firestore/v1/firestore");
const docProto = require("@firestore-emulator/proto/dist/google/firestore/v1/document");
const queryProto = require("@firestore-emulator/proto/dist/google/firestore/v1/query");
const writeProto = require("@firestore-emulator/proto/dist/google/firestore/v1/write");
const { Empty } = require("@firestore-emulator/proto/dist/google/protobuf/empty");

const Status = grpc.status;
const FieldOp = queryProto.StructuredQueryFieldFilterOperator;
const UnaryOp = queryProto.StructuredQueryUnaryFilterOperator;
const CompositeOp = queryProto.StructuredQueryCompositeFilterOperator;
const Direction = queryProto.StructuredQueryDirection;
const ServerValue = writeProto.DocumentTransformFieldTransformServerValue;

// A holder that has not called us for this long loses a contended lock (crashed client, deadlock).
const LOCK_LEASE_MS = 5000;
// A read that waits this long for a lock gives up with ABORTED.
const LOCK_WAIT_MS = 30000;
// Transactions untouched for this long are forgotten.
const TXN_IDLE_MS = 5 * 60 * 1000;

class RpcError extends Error {
  constructor(code, details) {
    super(details);
    this.code = code;
    this.details = details;
  }
}

const fail = (code, details) => {
  throw new RpcError(code, details);
};

// ---------------------------------------------------------------- values
// Internal value form: {t, v}; t in null|bool|int|double|ts|str|bytes|ref|geo|arr|map.

function fromProto(value) {
  if (value.has_null_value) return { t: "null", v: null };
  if (value.has_boolean_value) return { t: "bool", v: value.boolean_value };
  if (value.has_integer_value) return { t: "int", v: Number(value.integer_value) };
  if (value.has_double_value) return { t: "double", v: value.double_value };
  if (value.has_timestamp_value) {
    return { t: "ts", v: { seconds: Number(value.timestamp_value.seconds), nanos: value.timestamp_value.nanos } };
  }
  if (value.has_string_value) return { t: "str", v: value.string_value };
  if (value.has_bytes_value) return { t: "bytes", v: Buffer.from(value.bytes_value) };
  if (value.has_reference_value) return { t: "ref", v: value.reference_value };
  if (value.has_geo_point_value) {
    return { t: "geo", v: { latitude: value.geo_point_value.latitude, longitude: value.geo_point_value.longitude } };
  }
  if (value.has_array_value) {
    // As Firestore (and Google's emulator): an array may not hold an array directly.
    if (value.array_value.values.some((item) => item.has_array_value)) {
      fail(Status.INVALID_ARGUMENT, "Cannot convert an array value in an array value.");
    }
    return { t: "arr", v: value.array_value.values.map(fromProto) };
  }
  if (value.has_map_value) return { t: "map", v: fieldsFromProto(value.map_value.fields) };
  fail(Status.INVALID_ARGUMENT, "value has no type set");
}

function fieldsFromProto(protoMap) {
  const out = Object.create(null);
  for (const [key, value] of protoMap) out[key] = fromProto(value);
  return out;
}

function toProtoObject(value) {
  switch (value.t) {
    case "null": return { null_value: 0 };
    case "bool": return { boolean_value: value.v };
    case "int": return { integer_value: value.v };
    case "double": return { double_value: value.v };
    case "ts": return { timestamp_value: { seconds: value.v.seconds, nanos: value.v.nanos } };
    case "str": return { string_value: value.v };
    case "bytes": return { bytes_value: new Uint8Array(value.v) };
    case "ref": return { reference_value: value.v };
    case "geo": return { geo_point_value: { ...value.v } };
    case "arr": return { array_value: { values: value.v.map(toProtoObject) } };
    case "map": return { map_value: { fields: fieldsToProtoObject(value.v) } };
    default: throw new Error(`unknown value type ${value.t}`);
  }
}

function fieldsToProtoObject(fields) {
  const out = {};
  for (const key of Object.keys(fields)) out[key] = toProtoObject(fields[key]);
  return out;
}

const TYPE_ORDER = { null: 0, bool: 1, int: 2, double: 2, ts: 3, str: 4, bytes: 5, ref: 6, geo: 7, arr: 8, map: 9 };

const sign = (n) => (n < 0 ? -1 : n > 0 ? 1 : 0);

function compareNumbers(a, b) {
  const aNaN = Number.isNaN(a);
  const bNaN = Number.isNaN(b);
  if (aNaN || bNaN) return aNaN && bNaN ? 0 : aNaN ? -1 : 1;
  return sign(a - b);
}

function compareStrings(a, b) {
  // Firestore orders strings by their UTF-8 bytes.
  return sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

function compareRefs(a, b) {
  const as = a.split("/");
  const bs = b.split("/");
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const c = compareStrings(as[i], bs[i]);
    if (c !== 0) return c;
  }
  return sign(as.length - bs.length);
}

// Firestore's total order over values (types first, then values within a type).
function compareValues(a, b) {
  const ta = TYPE_ORDER[a.t];
  const tb = TYPE_ORDER[b.t];
  if (ta !== tb) return sign(ta - tb);
  switch (a.t) {
    case "null": return 0;
    case "bool": return sign(Number(a.v) - Number(b.v));
    case "int":
    case "double": return compareNumbers(a.v, b.v);
    case "ts": return sign(a.v.seconds - b.v.seconds) || sign(a.v.nanos - b.v.nanos);
    case "str": return compareStrings(a.v, b.v);
    case "bytes": return sign(Buffer.compare(a.v, b.v));
    case "ref": return compareRefs(a.v, b.v);
    case "geo": return sign(a.v.latitude - b.v.latitude) || sign(a.v.longitude - b.v.longitude);
    case "arr": {
      for (let i = 0; i < Math.min(a.v.length, b.v.length); i++) {
        const c = compareValues(a.v[i], b.v[i]);
        if (c !== 0) return c;
      }
      return sign(a.v.length - b.v.length);
    }
    case "map": {
      const ak = Object.keys(a.v).sort(compareStrings);
      const bk = Object.keys(b.v).sort(compareStrings);
      for (let i = 0; i < Math.min(ak.length, bk.length); i++) {
        const c = compareStrings(ak[i], bk[i]) || compareValues(a.v[ak[i]], b.v[bk[i]]);
        if (c !== 0) return c;
      }
      return sign(ak.length - bk.length);
    }
    default: return 0;
  }
}

const equalValues = (a, b) => compareValues(a, b) === 0;
const isNumber = (value) => value.t === "int" || value.t === "double";

// Stored in the upstream document tree in place of upstream's field classes; implements the same
// interface so that upstream's Listen keeps working on documents written here.
class StoredValue {
  constructor(value) {
    this.value = value;
  }
  get type() {
    return Object.keys(toProtoObject(this.value))[0];
  }
  static of(other) {
    if (other instanceof StoredValue) return other.value;
    return fromProto(docProto.Value.fromObject(other.toV1ValueObject()));
  }
  toV1ValueObject() { return toProtoObject(this.value); }
  toJSON() { return { type: this.type, value: this.value.v }; }
  eq(other) { return equalValues(this.value, StoredValue.of(other)); }
  lt(other) { return compareValues(this.value, StoredValue.of(other)) < 0; }
  lte(other) { return compareValues(this.value, StoredValue.of(other)) <= 0; }
  gt(other) { return compareValues(this.value, StoredValue.of(other)) > 0; }
  gte(other) { return compareValues(this.value, StoredValue.of(other)) >= 0; }
}

// ---------------------------------------------------------------- field paths

function parseFieldPath(path) {
  const segments = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < path.length; i++) {
    const ch = path[i];
    if (quoted) {
      if (ch === "\\" && i + 1 < path.length) current += path[++i];
      else if (ch === "`") quoted = false;
      else current += ch;
    } else if (ch === "`") quoted = true;
    else if (ch === ".") {
      segments.push(current);
      current = "";
    } else current += ch;
  }
  segments.push(current);
  if (quoted || segments.some((s) => s === "")) fail(Status.INVALID_ARGUMENT, `invalid field path: ${path}`);
  return segments;
}

function put(obj, key, value) {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function copyFields(fields) {
  const out = Object.create(null);
  for (const key of Object.keys(fields)) put(out, key, fields[key]);
  return out;
}

function getIn(fields, segments) {
  let current = { t: "map", v: fields };
  for (const segment of segments) {
    if (!current || current.t !== "map" || !Object.hasOwn(current.v, segment)) return undefined;
    current = current.v[segment];
  }
  return current;
}

function setIn(fields, segments, value) {
  const out = copyFields(fields);
  const [head, ...rest] = segments;
  if (rest.length === 0) {
    put(out, head, value);
    return out;
  }
  const child = Object.hasOwn(out, head) && out[head].t === "map" ? out[head].v : Object.create(null);
  put(out, head, { t: "map", v: setIn(child, rest, value) });
  return out;
}

function deleteIn(fields, segments) {
  const [head, ...rest] = segments;
  if (!Object.hasOwn(fields, head)) return fields;
  const out = copyFields(fields);
  if (rest.length === 0) {
    delete out[head];
    return out;
  }
  if (out[head].t !== "map") return fields;
  put(out, head, { t: "map", v: deleteIn(out[head].v, rest) });
  return out;
}

// ---------------------------------------------------------------- document tree access

function timestampFromDate(date) {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function storedFields(doc) {
  const out = Object.create(null);
  for (const [key, field] of Object.entries(doc.fields)) put(out, key, StoredValue.of(field));
  return out;
}

function documentObject(doc, select) {
  let fields = fieldsToProtoObject(storedFields(doc));
  if (select) {
    const keep = new Set(select.map((path) => parseFieldPath(path)[0]));
    fields = Object.fromEntries(Object.entries(fields).filter(([key]) => keep.has(key)));
  }
  return {
    name: doc.getPath(),
    fields,
    create_time: timestampFromDate(doc.metadata.createdAt),
    update_time: timestampFromDate(doc.metadata.updatedAt),
  };
}

function checkDocumentPath(path) {
  const parts = path.split("/");
  if (parts.length < 7 || parts[0] !== "projects" || parts[2] !== "databases" || parts[4] !== "documents"
      || (parts.length - 5) % 2 !== 0 || parts.some((p) => p === "")) {
    fail(Status.INVALID_ARGUMENT, `invalid document path: ${path}`);
  }
}

// ---------------------------------------------------------------- server

function startServer(host, port, onListening) {
  // Capture upstream's service implementation before grpc binds its methods, so ours can replace them.
  let upstream = null;
  const originalAddService = grpc.Server.prototype.addService;
  const overrides = {};
  // NETRA_FIRESTORE_UPSTREAM_ONLY=1 serves upstream's behaviour unchanged (to re-check its gaps on upgrades).
  const upstreamOnly = process.env.NETRA_FIRESTORE_UPSTREAM_ONLY === "1";
  grpc.Server.prototype.addService = function addService(definition, implementation) {
    upstream = implementation;
    if (upstreamOnly) return originalAddService.call(this, definition, implementation);
    for (const name of Object.keys(definition)) {
      const original = implementation[name];
      implementation[name] = (call, callback) => (overrides[name] || original).call(implementation, call, callback);
    }
    return originalAddService.call(this, definition, implementation);
  };
  let emulator;
  try {
    emulator = new FirestoreServer();
  } finally {
    grpc.Server.prototype.addService = originalAddService;
  }
  if (!upstream) throw new Error("could not capture the Firestore service implementation");
  const state = emulator.state;
  state.emitter.setMaxListeners(0);

  // Every committed change to a document bumps its version; transactions compare versions at commit.
  const versions = new Map();
  let clock = 0;
  const versionOf = (path) => versions.get(path) || 0;

  // Commit times strictly increase, so every write gets a distinct update_time (update_time preconditions).
  let lastCommitMs = 0;
  const commitDate = () => {
    lastCommitMs = Math.max(Date.now(), lastCommitMs + 1);
    return new Date(lastCommitMs);
  };

  // ------------------------------------------------------------ transactions and locks
  const txns = new Map();
  const locks = new Map();
  const txnKey = (bytes) => Buffer.from(bytes).toString("hex");

  function beginTxn(options) {
    const id = crypto.randomBytes(16);
    const txn = {
      key: txnKey(id), id, readOnly: Boolean(options && options.has_read_only),
      reads: new Map(), locks: new Set(), waiters: new Set(), aborted: null, lastActive: Date.now(),
    };
    txns.set(txn.key, txn);
    return txn;
  }

  function findTxn(bytes) {
    const txn = txns.get(txnKey(bytes));
    if (!txn) fail(Status.INVALID_ARGUMENT, "Transaction is invalid or has expired.");
    if (txn.aborted) fail(Status.ABORTED, `Transaction aborted: ${txn.aborted}`);
    txn.lastActive = Date.now();
    return txn;
  }

  function releaseLocks(txn) {
    for (const path of txn.locks) {
      const lock = locks.get(path);
      if (!lock || lock.owner !== txn) continue;
      const next = lock.waiters.shift();
      if (next) {
        clearInterval(next.timer);
        next.txn.waiters.delete(next);
        lock.owner = next.txn;
        next.txn.locks.add(path);
        next.txn.lastActive = Date.now();
        next.resolve();
      } else {
        locks.delete(path);
      }
    }
    txn.locks.clear();
  }

  function abortTxn(txn, reason) {
    txn.aborted = reason;
    for (const waiter of txn.waiters) waiter.cancel(new RpcError(Status.ABORTED, `Transaction aborted: ${reason}`));
    releaseLocks(txn);
  }

  function endTxn(txn) {
    releaseLocks(txn);
    txns.delete(txn.key);
  }

  // Resolves once txn holds the document's lock; true if it had to wait.
  function acquire(txn, path) {
    if (txn.readOnly) return Promise.resolve(false);
    const lock = locks.get(path);
    if (!lock) {
      locks.set(path, { owner: txn, waiters: [] });
      txn.locks.add(path);
      return Promise.resolve(false);
    }
    if (lock.owner === txn) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const waiter = { txn, resolve: () => resolve(true), timer: null };
      waiter.cancel = (error) => {
        clearInterval(waiter.timer);
        const index = lock.waiters.indexOf(waiter);
        if (index >= 0) lock.waiters.splice(index, 1);
        txn.waiters.delete(waiter);
        reject(error);
      };
      waiter.timer = setInterval(() => {
        if (lock.owner && Date.now() - lock.owner.lastActive > LOCK_LEASE_MS) {
          abortTxn(lock.owner, `lock on ${path} expired while another transaction waited`);
        } else if (Date.now() - started > LOCK_WAIT_MS) {
          waiter.cancel(new RpcError(Status.ABORTED, `Transaction lock timeout on ${path}`));
        }
      }, 100);
      lock.waiters.push(waiter);
      txn.waiters.add(waiter);
    });
  }

  function recordRead(txn, path) {
    // Read-only transactions never abort: they take no locks and nothing is checked at commit.
    if (!txn.readOnly && !txn.reads.has(path)) txn.reads.set(path, versionOf(path));
  }

  setInterval(() => {
    const now = Date.now();
    for (const txn of txns.values()) {
      if (now - txn.lastActive > TXN_IDLE_MS && txn.waiters.size === 0) endTxn(txn);
    }
  }, 30000).unref();

  function readTxn(request, respondWithNew) {
    if (request.consistency_selector === "transaction") return findTxn(request.transaction);
    if (request.consistency_selector === "new_transaction") {
      const txn = beginTxn(request.new_transaction);
      respondWithNew(txn);
      return txn;
    }
    return null;
  }

  // ------------------------------------------------------------ writes

  function applyTransform(fields, transform, date) {
    const segments = parseFieldPath(transform.field_path);
    const current = getIn(fields, segments);
    let result;
    if (transform.has_set_to_server_value) {
      if (transform.set_to_server_value !== ServerValue.REQUEST_TIME) {
        fail(Status.INVALID_ARGUMENT, `unsupported server value ${transform.set_to_server_value}`);
      }
      result = { t: "ts", v: timestampFromDate(date) };
    } else if (transform.has_increment || transform.has_maximum || transform.has_minimum) {
      const operand = fromProto(transform.has_increment ? transform.increment
        : transform.has_maximum ? transform.maximum : transform.minimum);
      if (!isNumber(operand)) fail(Status.INVALID_ARGUMENT, "numeric transforms need a number operand");
      if (!current || !isNumber(current)) {
        result = operand;
      } else if (transform.has_increment) {
        const sum = current.v + operand.v;
        result = { t: current.t === "int" && operand.t === "int" ? "int" : "double", v: sum };
      } else {
        const pickOperand = transform.has_maximum ? compareNumbers(operand.v, current.v) > 0
          : compareNumbers(operand.v, current.v) < 0;
        result = pickOperand ? operand : current;
      }
    } else if (transform.has_append_missing_elements) {
      const items = current && current.t === "arr" ? [...current.v] : [];
      for (const value of transform.append_missing_elements.values.map(fromProto)) {
        if (!items.some((item) => equalValues(item, value))) items.push(value);
      }
      result = { t: "arr", v: items };
    } else if (transform.has_remove_all_from_array) {
      const remove = transform.remove_all_from_array.values.map(fromProto);
      const items = current && current.t === "arr" ? current.v : [];
      result = { t: "arr", v: items.filter((item) => !remove.some((value) => equalValues(item, value))) };
    } else {
      fail(Status.INVALID_ARGUMENT, `unsupported field transform on ${transform.field_path}`);
    }
    return { fields: setIn(fields, segments, result), result };
  }

  // Validates every write against the state the earlier writes of the same commit leave, then applies
  // them all: a commit is all or nothing.
  function applyWrites(writes, date) {
    const staged = new Map();
    const current = (path) => {
      if (staged.has(path)) return staged.get(path);
      const doc = state.getDocument(path);
      if (!doc.metadata.hasExist) return { exists: false, fields: Object.create(null), createdAt: null, updatedAt: null };
      return { exists: true, fields: storedFields(doc), createdAt: doc.metadata.createdAt, updatedAt: doc.metadata.updatedAt };
    };
    const results = [];
    for (const write of writes) {
      const path = writePath(write);
      checkDocumentPath(path);
      const before = current(path);
      if (write.has_current_document) {
        const pre = write.current_document;
        if (pre.has_exists && pre.exists && !before.exists) {
          fail(Status.NOT_FOUND, `no entity to update: ${path}`);
        }
        if (pre.has_exists && !pre.exists && before.exists) {
          fail(Status.ALREADY_EXISTS, `entity already exists: ${path}`);
        }
        if (pre.has_update_time) {
          const want = pre.update_time;
          const have = before.exists ? timestampFromDate(before.updatedAt) : null;
          if (!have || have.seconds !== Number(want.seconds) || have.nanos !== want.nanos) {
            fail(Status.FAILED_PRECONDITION, `the document ${path} does not have the required update_time`);
          }
        }
      }
      const transformResults = [];
      if (write.has_delete) {
        staged.set(path, { exists: false, fields: Object.create(null), createdAt: null, updatedAt: null });
      } else {
        let fields;
        if (write.has_update) {
          const incoming = fieldsFromProto(write.update.fields);
          if (write.has_update_mask) {
            fields = before.exists ? before.fields : Object.create(null);
            for (const maskPath of write.update_mask.field_paths) {
              const segments = parseFieldPath(maskPath);
              const value = getIn(incoming, segments);
              fields = value === undefined ? deleteIn(fields, segments) : setIn(fields, segments, value);
            }
          } else {
            fields = incoming;
          }
        } else {
          fields = before.fields;
        }
        const transforms = write.has_transform ? write.transform.field_transforms : write.update_transforms;
        for (const transform of transforms) {
          const applied = applyTransform(fields, transform, date);
          fields = applied.fields;
          transformResults.push(toProtoObject(applied.result));
        }
        staged.set(path, { exists: true, fields, createdAt: before.exists ? before.createdAt : date, updatedAt: date });
      }
      results.push({ update_time: timestampFromDate(date), transform_results: transformResults });
    }
    for (const [path, next] of staged) {
      const doc = state.getDocument(path);
      versions.set(path, ++clock);
      if (!next.exists) {
        if (doc.metadata.hasExist) doc.delete();
        continue;
      }
      const created = !doc.metadata.hasExist;
      doc.metadata = { hasExist: true, createdAt: next.createdAt, updatedAt: next.updatedAt };
      const fields = {};
      for (const key of Object.keys(next.fields)) put(fields, key, new StoredValue(next.fields[key]));
      doc.fields = fields;
      doc.emitter.emit(created ? "create-document" : "update-document", { document: doc });
    }
    return results;
  }

  // ------------------------------------------------------------ queries

  function containerOf(parent) {
    const parts = parent.split("/");
    if (parts.length === 5) return state.getProject(parts[1]).getDatabase(parts[3]);
    checkDocumentPath(parent);
    return state.getDocument(parent);
  }

  function collectDocuments(parent, selector) {
    if (!selector.collection_id) fail(Status.INVALID_ARGUMENT, "query.from needs a collection_id");
    if (!selector.all_descendants) {
      return state.getCollection(`${parent}/${selector.collection_id}`).getAllDocuments()
        .filter((doc) => doc.metadata.hasExist);
    }
    const found = [];
    const walk = (container) => {
      for (const collection of Object.values(container.collections || {})) {
        for (const doc of collection.getAllDocuments()) {
          if (collection.name === selector.collection_id && doc.metadata.hasExist) found.push(doc);
          walk(doc);
        }
      }
    };
    walk(containerOf(parent));
    return found;
  }

  function docValue(doc, path) {
    if (path === "__name__") return { t: "ref", v: doc.getPath() };
    const segments = parseFieldPath(path);
    const head = doc.fields[segments[0]];
    if (head === undefined || !Object.hasOwn(doc.fields, segments[0])) return undefined;
    return getIn({ [segments[0]]: StoredValue.of(head) }, segments);
  }

  function matches(doc, filter) {
    if (filter.has_composite_filter) {
      const op = filter.composite_filter.op;
      const parts = filter.composite_filter.filters;
      if (op === CompositeOp.AND) return parts.every((f) => matches(doc, f));
      if (op === CompositeOp.OR) return parts.some((f) => matches(doc, f));
      fail(Status.INVALID_ARGUMENT, "composite filter needs AND or OR");
    }
    if (filter.has_unary_filter) {
      const value = docValue(doc, filter.unary_filter.field.field_path);
      if (value === undefined) return false;
      const nan = isNumber(value) && Number.isNaN(value.v);
      switch (filter.unary_filter.op) {
        case UnaryOp.IS_NULL: return value.t === "null";
        case UnaryOp.IS_NOT_NULL: return value.t !== "null";
        case UnaryOp.IS_NAN: return nan;
        case UnaryOp.IS_NOT_NAN: return !nan && value.t !== "null";
        default: fail(Status.INVALID_ARGUMENT, "unary filter needs an operator");
      }
    }
    if (filter.has_field_filter) {
      const { field, op } = filter.field_filter;
      const value = docValue(doc, field.field_path);
      if (value === undefined) return false;
      const operand = fromProto(filter.field_filter.value);
      const sameKind = TYPE_ORDER[value.t] === TYPE_ORDER[operand.t];
      const c = compareValues(value, operand);
      switch (op) {
        case FieldOp.EQUAL: return c === 0;
        case FieldOp.NOT_EQUAL: return c !== 0 && value.t !== "null";
        case FieldOp.LESS_THAN: return sameKind && c < 0;
        case FieldOp.LESS_THAN_OR_EQUAL: return sameKind && c <= 0;
        case FieldOp.GREATER_THAN: return sameKind && c > 0;
        case FieldOp.GREATER_THAN_OR_EQUAL: return sameKind && c >= 0;
        case FieldOp.ARRAY_CONTAINS: return value.t === "arr" && value.v.some((item) => equalValues(item, operand));
        case FieldOp.ARRAY_CONTAINS_ANY:
          return value.t === "arr" && operand.t === "arr"
            && value.v.some((item) => operand.v.some((candidate) => equalValues(item, candidate)));
        case FieldOp.IN: return operand.t === "arr" && operand.v.some((candidate) => equalValues(value, candidate));
        case FieldOp.NOT_IN:
          return operand.t === "arr" && value.t !== "null" && !operand.v.some((c2) => equalValues(value, c2));
        default: fail(Status.INVALID_ARGUMENT, "field filter needs an operator");
      }
    }
    return true;
  }

  const INEQUALITY = new Set([FieldOp.LESS_THAN, FieldOp.LESS_THAN_OR_EQUAL, FieldOp.GREATER_THAN,
    FieldOp.GREATER_THAN_OR_EQUAL, FieldOp.NOT_EQUAL, FieldOp.NOT_IN]);

  function firstInequalityField(filter) {
    if (!filter) return null;
    if (filter.has_field_filter && INEQUALITY.has(filter.field_filter.op)) return filter.field_filter.field.field_path;
    if (filter.has_composite_filter) {
      for (const part of filter.composite_filter.filters) {
        const found = firstInequalityField(part);
        if (found) return found;
      }
    }
    return null;
  }

  function compareToCursor(doc, orders, cursorValues) {
    for (let i = 0; i < cursorValues.length && i < orders.length; i++) {
      const value = docValue(doc, orders[i].path);
      const c = compareValues(value, cursorValues[i]) * (orders[i].desc ? -1 : 1);
      if (c !== 0) return c;
    }
    return 0;
  }

  function runQuery(parent, query) {
    if (query.from.length !== 1) fail(Status.INVALID_ARGUMENT, "query.from must name exactly one collection");
    let docs = collectDocuments(parent, query.from[0]);
    if (query.has_where) docs = docs.filter((doc) => matches(doc, query.where));

    const orders = query.order_by.map((o) => ({ path: o.field.field_path, desc: o.direction === Direction.DESCENDING }));
    if (orders.length === 0) {
      const inequality = firstInequalityField(query.has_where ? query.where : null);
      if (inequality) orders.push({ path: inequality, desc: false });
    }
    if (!orders.some((o) => o.path === "__name__")) {
      orders.push({ path: "__name__", desc: orders.length > 0 && orders[orders.length - 1].desc });
    }
    // Like Firestore, a document without an ordered field is not in the result.
    docs = docs.filter((doc) => orders.every((o) => docValue(doc, o.path) !== undefined));
    docs.sort((a, b) => {
      for (const o of orders) {
        const c = compareValues(docValue(a, o.path), docValue(b, o.path));
        if (c !== 0) return o.desc ? -c : c;
      }
      return 0;
    });
    if (query.has_start_at) {
      const values = query.start_at.values.map(fromProto);
      const before = query.start_at.before;
      docs = docs.filter((doc) => {
        const c = compareToCursor(doc, orders, values);
        return before ? c >= 0 : c > 0;
      });
    }
    if (query.has_end_at) {
      const values = query.end_at.values.map(fromProto);
      const before = query.end_at.before;
      docs = docs.filter((doc) => {
        const c = compareToCursor(doc, orders, values);
        return before ? c < 0 : c <= 0;
      });
    }
    if (query.offset) docs = docs.slice(query.offset);
    if (query.has_limit) docs = docs.slice(0, query.limit.value);
    return docs;
  }

  // ------------------------------------------------------------ handlers

  const unary = (handler) => (call, callback) => {
    Promise.resolve().then(() => handler(call)).then(
      (response) => callback(null, response),
      (error) => callback(toStatus(error), null),
    );
  };

  const streaming = (handler) => (call) => {
    Promise.resolve().then(() => handler(call)).then(
      () => call.end(),
      (error) => call.emit("error", toStatus(error)),
    );
  };

  function toStatus(error) {
    if (error instanceof RpcError) return { code: error.code, details: error.details };
    console.error(error);
    return { code: Status.INTERNAL, details: `emulator error: ${error && error.message}` };
  }

  overrides.BeginTransaction = unary((call) => {
    const txn = beginTxn(call.request.options);
    return v1.BeginTransactionResponse.fromObject({ transaction: txn.id });
  });

  overrides.Rollback = unary((call) => {
    const txn = txns.get(txnKey(call.request.transaction));
    if (txn) {
      for (const waiter of txn.waiters) waiter.cancel(new RpcError(Status.ABORTED, "Transaction rolled back"));
      endTxn(txn);
    }
    return Empty.fromObject({});
  });

  function writePath(write) {
    if (write.has_delete) return write.delete;
    if (write.has_update) return write.update.name;
    if (write.has_transform) return write.transform.document;
    return fail(Status.INVALID_ARGUMENT, "write has no operation");
  }

  // Like Firestore, a document locked by a transaction's read blocks every other write to it (transactions,
  // batches, plain writes) until that transaction ends. Locks are taken in path order to avoid deadlocks.
  async function lockForWrite(txn, writes) {
    const paths = [...new Set(writes.map(writePath))].sort(compareRefs);
    for (const path of paths) {
      checkDocumentPath(path);
      await acquire(txn, path);
    }
  }

  overrides.Commit = unary(async (call) => {
    const request = call.request;
    let txn = null;
    if (request.transaction && request.transaction.length > 0) {
      txn = txns.get(txnKey(request.transaction));
      if (!txn) fail(Status.INVALID_ARGUMENT, "Transaction is invalid or has expired.");
      txn.lastActive = Date.now();
    }
    // A plain commit holds its locks through a short-lived transaction of its own.
    const holder = txn || beginTxn(null);
    try {
      if (holder.aborted) fail(Status.ABORTED, `Transaction aborted: ${holder.aborted}`);
      await lockForWrite(holder, request.writes);
      if (holder.aborted) fail(Status.ABORTED, `Transaction aborted: ${holder.aborted}`);
      for (const [path, version] of holder.reads) {
        if (versionOf(path) !== version) {
          fail(Status.ABORTED, `Transaction aborted due to contention on document ${path}`);
        }
      }
      const date = commitDate();
      const results = applyWrites(request.writes, date);
      return v1.CommitResponse.fromObject({ commit_time: timestampFromDate(date), write_results: results });
    } finally {
      endTxn(holder);
    }
  });

  overrides.BatchGetDocuments = streaming(async (call) => {
    const request = call.request;
    const txn = readTxn(request, (created) => call.write(v1.BatchGetDocumentsResponse.fromObject({
      transaction: created.id,
    })));
    call.on("cancelled", () => {
      if (txn) for (const waiter of txn.waiters) waiter.cancel(new RpcError(Status.CANCELLED, "cancelled"));
    });
    for (const path of request.documents) {
      checkDocumentPath(path);
      if (txn) {
        await acquire(txn, path);
        recordRead(txn, path);
      }
      const doc = state.getDocument(path);
      const readTime = timestampFromDate(new Date());
      call.write(v1.BatchGetDocumentsResponse.fromObject(doc.metadata.hasExist
        ? { found: documentObject(doc, request.has_mask ? request.mask.field_paths : null), read_time: readTime }
        : { missing: path, read_time: readTime }));
    }
  });

  overrides.GetDocument = unary((call) => {
    checkDocumentPath(call.request.name);
    const doc = state.getDocument(call.request.name);
    if (!doc.metadata.hasExist) fail(Status.NOT_FOUND, `Document ${call.request.name} not found`);
    return docProto.Document.fromObject(documentObject(doc));
  });

  overrides.RunQuery = streaming(async (call) => {
    const request = call.request;
    let newTxnId;
    const txn = readTxn(request, (created) => {
      newTxnId = created.id;
    });
    const query = request.structured_query;
    let docs = runQuery(request.parent, query);
    if (txn) {
      // Lock what the query returned, and run it again if a lock made us wait (the data may have moved).
      for (let attempt = 0; attempt < 5; attempt++) {
        let waited = false;
        for (const doc of docs) waited = (await acquire(txn, doc.getPath())) || waited;
        if (!waited) break;
        docs = runQuery(request.parent, query);
      }
      for (const doc of docs) recordRead(txn, doc.getPath());
    }
    const readTime = timestampFromDate(new Date());
    const select = query.has_select && query.select.fields.length > 0
      ? query.select.fields.map((f) => f.field_path) : null;
    if (newTxnId) call.write(v1.RunQueryResponse.fromObject({ transaction: newTxnId, read_time: readTime }));
    for (const doc of docs) {
      call.write(v1.RunQueryResponse.fromObject({ document: documentObject(doc, select), read_time: readTime }));
    }
    call.write(v1.RunQueryResponse.fromObject({ done: true, read_time: readTime }));
  });

  overrides.RunAggregationQuery = streaming(async (call) => {
    const request = call.request;
    let newTxnId;
    readTxn(request, (created) => {
      newTxnId = created.id;
    });
    const aggregationQuery = request.structured_aggregation_query;
    const docs = runQuery(request.parent, aggregationQuery.structured_query);
    const fields = {};
    for (const aggregation of aggregationQuery.aggregations) {
      let value;
      if (aggregation.has_count) {
        const upTo = aggregation.count.has_up_to ? Number(aggregation.count.up_to.value) : Infinity;
        value = { t: "int", v: Math.min(docs.length, upTo) };
      } else if (aggregation.has_sum || aggregation.has_avg) {
        const path = (aggregation.has_sum ? aggregation.sum : aggregation.avg).field.field_path;
        const numbers = docs.map((doc) => docValue(doc, path)).filter((v) => v !== undefined && isNumber(v));
        const total = numbers.reduce((acc, v) => acc + v.v, 0);
        if (aggregation.has_sum) {
          value = { t: numbers.every((v) => v.t === "int") ? "int" : "double", v: total };
        } else {
          value = numbers.length ? { t: "double", v: total / numbers.length } : { t: "null", v: null };
        }
      } else {
        fail(Status.INVALID_ARGUMENT, "unsupported aggregation");
      }
      fields[aggregation.alias] = toProtoObject(value);
    }
    call.write(v1.RunAggregationQueryResponse.fromObject({
      result: { aggregate_fields: fields },
      read_time: timestampFromDate(new Date()),
      ...(newTxnId ? { transaction: newTxnId } : {}),
    }));
  });

  overrides.ListDocuments = unary((call) => {
    const request = call.request;
    const collection = state.getCollection(`${request.parent}/${request.collection_id}`);
    let docs = collection.getAllDocuments()
      .filter((doc) => doc.metadata.hasExist || (request.show_missing && doc.hasChild()))
      .sort((a, b) => compareRefs(a.getPath(), b.getPath()));
    if (request.page_token) docs = docs.filter((doc) => compareRefs(doc.getPath(), request.page_token) > 0);
    let nextPageToken = "";
    if (request.page_size > 0 && docs.length > request.page_size) {
      docs = docs.slice(0, request.page_size);
      nextPageToken = docs[docs.length - 1].getPath();
    }
    const maskOnly = request.has_mask;
    return v1.ListDocumentsResponse.fromObject({
      documents: docs.map((doc) => (doc.metadata.hasExist
        ? (maskOnly ? documentObject(doc, request.mask.field_paths) : documentObject(doc))
        : { name: doc.getPath() })),
      next_page_token: nextPageToken,
    });
  });

  overrides.ListCollectionIds = unary((call) => {
    const container = containerOf(call.request.parent);
    const ids = Object.values(container.collections || {})
      .filter((collection) => collection.hasChild())
      .map((collection) => collection.name)
      .sort(compareStrings);
    return v1.ListCollectionIdsResponse.fromObject({ collection_ids: ids, next_page_token: "" });
  });

  // Not atomic, by definition: each write succeeds or fails on its own.
  overrides.BatchWrite = unary(async (call) => {
    const writeResults = [];
    const statuses = [];
    for (const write of call.request.writes) {
      const holder = beginTxn(null);
      try {
        await lockForWrite(holder, [write]);
        writeResults.push(applyWrites([write], commitDate())[0]);
        statuses.push({ code: Status.OK, message: "" });
      } catch (error) {
        const status = toStatus(error);
        writeResults.push({});
        statuses.push({ code: status.code, message: status.details });
      } finally {
        endTxn(holder);
      }
    }
    return v1.BatchWriteResponse.fromObject({ write_results: writeResults, status: statuses });
  });

  for (const name of ["UpdateDocument", "DeleteDocument", "CreateDocument", "PartitionQuery"]) {
    overrides[name] = unary(() => fail(Status.UNIMPLEMENTED, `${name} is not supported by this emulator`));
  }
  overrides.Write = (call) => {
    call.emit("error", { code: Status.UNIMPLEMENTED, details: "Write streams are not supported by this emulator" });
  };

  const grpcServer = emulator.server;
  grpcServer.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, boundPort) => {
    if (error) {
      console.error(`cannot listen on ${host}:${port}: ${error.message}`);
      process.exit(2);
    }
    onListening(boundPort);
  });
  return grpcServer;
}

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 0, watchStdin: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--host") args.host = argv[++i];
    else if (argv[i] === "--port") args.port = Number(argv[++i]);
    else if (argv[i] === "--watch-stdin") args.watchStdin = true;
    else {
      console.error(`unknown argument ${argv[i]}; usage: node server.cjs --host H --port N [--watch-stdin]`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    console.error(`--port must be an integer 0..65535, got ${args.port}`);
    process.exit(2);
  }
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const server = startServer(args.host, args.port, (port) => {
    process.stdout.write(`${JSON.stringify({ listening: true, host: args.host, port })}\n`);
  });
  const stop = () => {
    server.forceShutdown();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  if (args.watchStdin) {
    // The launcher holds our stdin open; when it dies (even by SIGKILL) the pipe closes and we follow.
    process.stdin.on("end", stop);
    process.stdin.on("error", stop);
    process.stdin.resume();
  }
}

main();
