// Drives the ksqldb-client npm package (Streaminy, HTTP/2) through one scenario against a server.
// Usage: node driver_ksqldb_client.js URL STREAM (NODE_PATH points at the installed node_modules).
// Prints one JSON object with what each step returned; the Python test asserts on it.
'use strict';
const KsqldbClient = require('ksqldb-client');

const EARLIEST = { properties: { 'ksql.streams.auto.offset.reset': 'earliest' } };

async function main(url, name) {
  const parsed = new URL(url);
  const client = new KsqldbClient({ host: `${parsed.protocol}//${parsed.hostname}`, port: Number(parsed.port) });
  const out = {};
  await client.connect();
  try {
    const created = await client.executeStatement(
      `CREATE STREAM ${name} (ID VARCHAR KEY, V INT) WITH (kafka_topic='${name.toLowerCase()}', value_format='JSON', partitions=1);`,
    );
    out.create = [created.status, created.data.rows[0].commandStatus.status];
    out.streams = (await client.listStreams()).map((s) => s.name);
    // executeStatement() reads the answer's first element, so INSERT VALUES (answered [] as
    // ksqlDB does) cannot go through it; insertInto() uses /inserts-stream.
    out.inserts = [];
    for (const row of [{ ID: 'a', V: 1 }, { ID: 'b', V: 2 }]) {
      const acked = await client.insertInto(name, row);
      out.inserts.push([acked.status, acked.data.rows]);
    }
    const pulled = await client.query(`SELECT * FROM ${name};`);
    out.pull = [pulled.status, pulled.data.metadata.columnNames, pulled.data.rows];
    const pushed = [];
    const push = await client.streamQuery(`SELECT * FROM ${name} EMIT CHANGES LIMIT 2;`, (d) => {
      if (d.rows) pushed.push(...d.rows);
    }, EARLIEST);
    out.push = [push.status, pushed];
    const described = await client.describeSource(name);
    out.describe = described.fields.map((f) => f.name);
    const copy = await client.executeStatement(`CREATE STREAM ${name}_C AS SELECT * FROM ${name} EMIT CHANGES;`);
    const queryId = copy.data.rows[0].commandStatus.queryId;
    out.queries = (await client.listQueries()).map((q) => q.id).filter((id) => id === queryId).length;
    const terminated = await client.executeStatement(`TERMINATE ${queryId};`);
    const dropped = await client.executeStatement(`DROP STREAM ${name}_C;`);
    out.terminate_drop = [terminated.data.rows[0].commandStatus.status, dropped.data.rows[0].commandStatus.status];
    const bad = await client.executeStatement('DESCRIBE NOPE_NOT_THERE;');
    out.error = [bad.status, bad.error.error_code];
  } finally {
    await client.disconnect();
  }
  return out;
}

main(process.argv[2], process.argv[3]).then(
  (out) => { process.stdout.write(JSON.stringify(out)); process.exit(0); },
  (err) => { process.stderr.write(String(err && err.stack || err)); process.exit(1); },
);
