// Cut editor text into statements on ";" the way ksqlDB's lexer sees it (outside '...', "...",
// `...`, -- comments and /* */ comments), keeping where each starts so that a server error's
// "line L:C" can be placed back in the editor. Mirrors cli/splitter.py.

/**
 * @returns {{text: string, start: number, end: number}[]} statements with the offsets of their
 *   first character (after whitespace and comments) and of the character after their ";"
 *   (or the end of the text for a last statement without one).
 */
export function splitStatements(source) {
  const out = [];
  let mode = "code";
  let start = -1;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    const pair = source.slice(i, i + 2);
    if (mode === "code") {
      if (pair === "--") { mode = "line"; i++; continue; }
      if (pair === "/*") { mode = "block"; i++; continue; }
      if (/\s/.test(c)) continue;
      if (start < 0 && c !== ";") start = i;
      if (c === "'") mode = "'";
      else if (c === '"') mode = '"';
      else if (c === "`") mode = "`";
      else if (c === ";") {
        if (start >= 0) out.push({ text: source.slice(start, i + 1), start, end: i + 1 });
        start = -1;
      }
    } else if (mode === "line") {
      if (c === "\n") mode = "code";
    } else if (mode === "block") {
      if (pair === "*/") { mode = "code"; i++; }
    } else if (c === mode) {
      if (source[i + 1] === mode) i++; // '' inside a string, `` inside an identifier
      else mode = "code";
    }
  }
  if (start >= 0) {
    const text = source.slice(start).trimEnd();
    out.push({ text: text.endsWith(";") ? text : text + ";", start, end: start + text.length });
  }
  return out;
}

/** The statement's first keyword, upper-cased: SELECT, CREATE, SET ... */
export function statementKind(text) {
  const m = /^\s*([A-Za-z]+)/.exec(text);
  return m ? m[1].toUpperCase() : "";
}

const QUOTED = "'((?:[^']|'')*)'";

/**
 * Statements the console keeps itself, as ksqlDB's CLI does (the server keeps no session):
 * SET/UNSET of request properties and DEFINE/UNDEFINE of variables. Returns an action, or null.
 */
export function sessionCommand(text) {
  const body = text.trim().replace(/;$/, "").trim();
  const unq = (s) => s.replace(/''/g, "'");
  let m = new RegExp(`^SET\\s+${QUOTED}\\s*=\\s*${QUOTED}$`, "i").exec(body);
  if (m) return { action: "set", name: unq(m[1]), value: unq(m[2]) };
  m = new RegExp(`^UNSET\\s+${QUOTED}$`, "i").exec(body);
  if (m) return { action: "unset", name: unq(m[1]) };
  m = new RegExp(`^DEFINE\\s+([A-Za-z_][A-Za-z0-9_]*)\\s*=\\s*${QUOTED}$`, "i").exec(body);
  if (m) return { action: "define", name: m[1], value: unq(m[2]) };
  m = /^UNDEFINE\s+([A-Za-z_][A-Za-z0-9_]*)$/i.exec(body);
  if (m) return { action: "undefine", name: m[1] };
  return null;
}

/**
 * Where a server message's "line L:C" (1-based) falls in the editor text, as a character offset,
 * given the statement's offset. Null when the message has no position.
 */
export function errorOffset(message, source, statementStart) {
  const m = /line (\d+):(\d+)/.exec(message || "");
  if (!m) return null;
  let line = Number(m[1]);
  let offset = statementStart;
  while (line > 1) {
    const nl = source.indexOf("\n", offset);
    if (nl < 0) return null;
    offset = nl + 1;
    line--;
  }
  // On the statement's first line, columns count from its start; later lines from their own.
  return Math.min(offset + Number(m[2]) - 1, source.length);
}
