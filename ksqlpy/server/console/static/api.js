// The console's only way to the server: ksqlpy's public REST API (the same one ksqlDB's clients
// use), plus GET /lineage and POST /trace. Every path is relative to the page's origin.

const KSQL_JSON = "application/vnd.ksql.v1+json";
const DELIMITED = "application/vnd.ksqlapi.delimited.v1";

/** An error answer of the server: its message (with "line L:C" when it has a position). */
export class ServerError extends Error {
  constructor(body, status) {
    super((body && body.message) || `HTTP ${status}`);
    this.body = body;
    this.status = status;
  }
}

async function errorOf(response) {
  const text = await response.text();
  try {
    return new ServerError(JSON.parse(text), response.status);
  } catch {
    return new ServerError({ message: text || response.statusText }, response.status);
  }
}

/** POST /ksql: statements that are not queries; resolves to the array of entities. */
export async function ksql(text, properties = {}, variables = {}) {
  const response = await fetch("/ksql", {
    method: "POST",
    headers: { "Content-Type": KSQL_JSON, Accept: KSQL_JSON },
    body: JSON.stringify({ ksql: text, streamsProperties: properties, sessionVariables: variables }),
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export async function info() {
  const response = await fetch("/info", { headers: { Accept: KSQL_JSON } });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()).KsqlServerInfo;
}

export async function lineage() {
  const response = await fetch("/lineage", { headers: { Accept: "application/json" } });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** POST /close-query: ends a push query on the server (its stream then ends too). */
export async function closeQuery(queryId) {
  await fetch("/close-query", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ queryId }),
  });
}

/**
 * POST /query-stream with delimited answers: the first line is the header
 * ({queryId, columnNames, columnTypes}), then one JSON array per row; a JSON object after the
 * header is an error; PRINT answers plain text lines. Calls handlers as lines arrive and resolves
 * when the stream ends. `signal` aborts reading.
 */
export async function streamQuery(sql, properties, variables, handlers, signal) {
  const response = await fetch("/query-stream", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: DELIMITED },
    body: JSON.stringify({ sql, properties, sessionVariables: variables }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let header = null;
  const take = (line) => {
    if (!line) return;
    if (header === null) {
      let parsed = null;
      try {
        parsed = JSON.parse(line);
      } catch {
        // not JSON: PRINT's text lines, which have no header
      }
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed) && "columnNames" in parsed) {
        header = parsed;
        handlers.header(header);
        return;
      }
      header = { queryId: null, columnNames: [], columnTypes: [], text: true };
      handlers.header(header);
    }
    if (header.text) {
      handlers.text(line);
      return;
    }
    const value = JSON.parse(line);
    if (Array.isArray(value)) handlers.rows([value]);
    else handlers.error(new ServerError(value, 200));
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop();
      if (lines.length === 1) take(lines[0]);
      else {
        // A burst of rows goes to the table in one piece, not row by row.
        const rows = [];
        for (const line of lines) {
          if (header !== null && !header.text && line.startsWith("[")) rows.push(JSON.parse(line));
          else {
            if (rows.length) handlers.rows(rows.splice(0));
            take(line);
          }
        }
        if (rows.length) handlers.rows(rows);
      }
    }
    take(buffered);
  } catch (e) {
    if (e.name !== "AbortError") throw e;
  }
  if (header === null) handlers.header({ queryId: null, columnNames: [], columnTypes: [] });
}

/** POST /trace: a key's records in a source and what persistent queries derived from them. */
export async function trace(request) {
  const response = await fetch("/trace", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(request),
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}
