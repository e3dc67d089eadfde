// Drives ksqlDB's npm client (@confluentinc/ksqldb-client) through one scenario against a server.
// Usage: node driver.js URL STREAM (NODE_PATH points at the installed node_modules).
// Prints one JSON object with what each step returned; the Python test asserts on it.
//
// The package ships TypeScript sources only (its "main" is index.ts), so .ts files are
// transpiled on load with the typescript package, as ts-node's transpile-only mode would.
'use strict';
const fs = require('fs');
const http2 = require('http2');
const ts = require('typescript');

require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020, esModuleInterop: true },
    fileName: filename,
  });
  module._compile(outputText, filename);
};
const { asyncIteratorQueryStream, ddl } = require('@confluentinc/ksqldb-client/index.ts');

const EARLIEST = { 'ksql.streams.auto.offset.reset': 'earliest' };

// A plain HTTP/2 request on the client's session: the client's own ddl() waits for a stream
// 'connect' event that Node's http2 never emits, so it cannot be awaited (see the test).
function request(session, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', ...headers });
    let status = 0;
    let data = '';
    stream.on('response', (h) => { status = h[':status']; });
    stream.on('data', (chunk) => { data += chunk; });
    stream.on('end', () => resolve({ status, data }));
    stream.on('error', reject);
    stream.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

// The first n rows of a query that stays open (a push query without LIMIT). The iterator cannot
// read a response that ends: on the stream's 'close' it resolves a pending next() with its buffer
// as if it were a row and never marks itself closed, so later next() calls never settle; and Node
// may emit 'close' before the last DATA frames were read. Responses that end (LIMIT, pull
// queries) are read with plain requests below. Breaking out closes the stream via return().
async function take(session, args, n) {
  const rows = [];
  for await (const row of asyncIteratorQueryStream(session, args, 'row')) {
    rows.push(row.row);
    if (rows.length === n) break;
  }
  return rows;
}

async function main(url, name) {
  const out = {};
  const session = http2.connect(url);
  try {
    const ddlPromise = ddl(session, { ksql: 'SHOW STREAMS;' });
    out.ddl_settled = await Promise.race([ddlPromise.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
    const created = await request(session, '/ksql', {
      ksql: `CREATE STREAM ${name} (ID VARCHAR KEY, V INT) WITH (kafka_topic='${name.toLowerCase()}', value_format='JSON', partitions=1);`,
    });
    out.create = [created.status, JSON.parse(created.data)[0].commandStatus.status];
    const inserted = await request(session, '/ksql', { ksql: `INSERT INTO ${name} (ID, V) VALUES ('a', 1);` });
    out.insert_values = [inserted.status, JSON.parse(inserted.data)];
    // The npm client sends one row per /inserts-stream request, without a final newline.
    const acks = await request(session, '/inserts-stream', `{"target":"${name}"}\n{"ID":"b","V":2}`);
    out.inserts_stream = [acks.status, acks.data.split('\n').filter((l) => l).map((l) => JSON.parse(l))];
    out.push = await take(session, { sql: `SELECT * FROM ${name} EMIT CHANGES;`, properties: EARLIEST }, 2);
    const limited = await request(session, '/query-stream', { sql: `SELECT * FROM ${name} EMIT CHANGES LIMIT 2;`, properties: EARLIEST });
    out.push_limit = limited.data.split('\n').filter((l) => l).map((l) => JSON.parse(l)).slice(1);
    const pulled = await request(session, '/query-stream', { sql: `SELECT V FROM ${name} WHERE V > 1;` });
    out.pull = pulled.data.split('\n').filter((l) => l).map((l) => JSON.parse(l)).slice(1);
    // Many push queries multiplexed on the client's one HTTP/2 session.
    const live = Array.from({ length: 20 }, () => take(session, { sql: `SELECT V FROM ${name} EMIT CHANGES;`, properties: EARLIEST }, 2));
    out.multiplexed = await Promise.all(live);
    const described = await request(session, '/ksql', { ksql: `DESCRIBE ${name};` });
    out.describe = JSON.parse(described.data)[0].sourceDescription.fields.map((f) => f.name);
    const csas = await request(session, '/ksql', { ksql: `CREATE STREAM ${name}_COPY AS SELECT * FROM ${name} EMIT CHANGES;` });
    const queryId = JSON.parse(csas.data)[0].commandStatus.queryId;
    const terminated = await request(session, '/ksql', { ksql: `TERMINATE ${queryId}; DROP STREAM ${name}_COPY;` });
    out.terminate_drop = JSON.parse(terminated.data).map((e) => e.commandStatus.status);
    const bad = await request(session, '/ksql', { ksql: 'DESCRIBE NOPE_NOT_THERE;' });
    out.error = [bad.status, JSON.parse(bad.data).error_code];
  } finally {
    session.close();
  }
  return out;
}

main(process.argv[2], process.argv[3]).then(
  (out) => { process.stdout.write(JSON.stringify(out)); process.exit(0); },
  (err) => { process.stderr.write(String(err && err.stack || err)); process.exit(1); },
);
