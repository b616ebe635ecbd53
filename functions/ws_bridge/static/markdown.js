// A small Markdown renderer for the agent's reports: headings, paragraphs, lists, pipe tables, fenced code,
// block quotes, rules, inline code, bold, italics and http(s) links.
//
// Safe by construction: it builds DOM nodes and only ever sets textContent, never innerHTML, so no text of a
// report or a message is parsed as HTML. Links are kept only for http(s) and mailto URLs. It copes with
// unfinished input (a streamed report cut in the middle of a table or a code block).

const FENCE = /^\s*(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const SAFE_URL = /^(https?:\/\/|mailto:)/i;

// Inline tokens, earliest match wins: escapes, code spans, links, strong, emphasis.
const INLINE = new RegExp([
  String.raw`\\([\\\`*_{}\[\]()#+\-.!|>~])`,                       // 1 escaped character
  String.raw`(\`+)([\s\S]*?[^\`])\2(?!\`)`,                         // 2,3 code span
  String.raw`\[([^\]\n]+)\]\(([^)\s]+)\)`,                          // 4,5 link
  String.raw`\*\*(?=\S)([\s\S]*?\S)\*\*`,                           // 6 strong (**)
  String.raw`(?<![\w])__(?=\S)([\s\S]*?\S)__(?![\w])`,              // 7 strong (__)
  String.raw`\*(?=[^\s*])([\s\S]*?[^\s*])\*`,                       // 8 emphasis (*)
  String.raw`(?<![\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\w])`,        // 9 emphasis (_)
].join("|"));

function el(doc, tag, className) {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Appends the inline content of `text` to `parent`. */
export function renderInline(text, parent, doc = document) {
  let rest = text;
  while (rest) {
    const match = INLINE.exec(rest);
    if (!match) {
      parent.append(doc.createTextNode(rest));
      return;
    }
    if (match.index > 0) parent.append(doc.createTextNode(rest.slice(0, match.index)));
    const [whole, escaped, , code, linkText, href, strong1, strong2, em1, em2] = match;
    if (escaped !== undefined) {
      parent.append(doc.createTextNode(escaped));
    } else if (code !== undefined) {
      const node = el(doc, "code");
      node.textContent = code.replace(/^ (.*) $/s, "$1");
      parent.append(node);
    } else if (linkText !== undefined) {
      if (SAFE_URL.test(href)) {
        const node = el(doc, "a");
        node.href = href;
        node.rel = "noopener noreferrer";
        node.target = "_blank";
        renderInline(linkText, node, doc);
        parent.append(node);
      } else {
        renderInline(linkText, parent, doc);
      }
    } else if (strong1 !== undefined || strong2 !== undefined) {
      const node = el(doc, "strong");
      renderInline(strong1 ?? strong2, node, doc);
      parent.append(node);
    } else {
      const node = el(doc, "em");
      renderInline(em1 ?? em2, node, doc);
      parent.append(node);
    }
    rest = rest.slice(match.index + whole.length);
  }
}

/** The cells of a table row; `\|` is a literal pipe inside a cell. */
export function splitRow(line) {
  let text = line.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  const cells = [];
  let cell = "";
  for (let i = 0; i < text.length; i += 1) {
    if (text[i] === "\\" && text[i + 1] === "|") {
      cell += "|";
      i += 1;
    } else if (text[i] === "|") {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += text[i];
    }
  }
  cells.push(cell.trim());
  return cells;
}

function alignments(separator) {
  return splitRow(separator).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    if (left && right) return "center";
    if (right) return "right";
    return left ? "left" : null;
  });
}

const NUMERIC = /^[-+]?[$€£]?[\d.,]+\s?(%|ms|s|k|M)?$/;

function table(doc, header, separator, rows) {
  const wrap = el(doc, "div", "table-wrap");
  // A wide table scrolls inside its own box on a phone; focusable so the keyboard can scroll it too.
  wrap.tabIndex = 0;
  wrap.setAttribute("role", "region");
  const node = el(doc, "table");
  const aligns = alignments(separator);
  const headCells = splitRow(header);
  wrap.setAttribute("aria-label", `Table: ${headCells.join(", ")}`);
  const thead = el(doc, "thead");
  const headRow = el(doc, "tr");
  headCells.forEach((text, i) => {
    const th = el(doc, "th");
    th.scope = "col";
    if (aligns[i]) th.style.textAlign = aligns[i];
    renderInline(text, th, doc);
    headRow.append(th);
  });
  thead.append(headRow);
  node.append(thead);
  const tbody = el(doc, "tbody");
  for (const line of rows) {
    const tr = el(doc, "tr");
    splitRow(line).slice(0, headCells.length).forEach((text, i) => {
      const td = el(doc, "td");
      if (aligns[i]) td.style.textAlign = aligns[i];
      else if (NUMERIC.test(text)) td.className = "num";
      renderInline(text, td, doc);
      tr.append(td);
    });
    tbody.append(tr);
  }
  node.append(tbody);
  wrap.append(node);
  return wrap;
}

function startsBlock(line, next) {
  return FENCE.test(line) || HEADING.test(line) || LIST_ITEM.test(line) || RULE.test(line) || QUOTE.test(line)
    || (line.includes("|") && next !== undefined && TABLE_SEPARATOR.test(next) && next.includes("-"));
}

/** Renders `markdown` into a DocumentFragment. `headingOffset` shifts heading levels (## -> h3 with 1). */
export function render(markdown, { doc = document, headingOffset = 1 } = {}) {
  const out = doc.createDocumentFragment();
  const lines = String(markdown ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !(lines[i].trim().startsWith(fence[1]) && FENCE.test(lines[i]))) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (absent while a streamed block is unfinished)
      const pre = el(doc, "pre");
      const code = el(doc, "code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.append(code);
      pre.tabIndex = 0;
      out.append(pre);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = Math.min(6, heading[1].length + headingOffset);
      const node = el(doc, `h${level}`);
      renderInline(heading[2], node, doc);
      out.append(node);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out.append(el(doc, "hr"));
      i += 1;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEPARATOR.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const header = line;
      const separator = lines[i + 1];
      const rows = [];
      i += 2;
      while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
        rows.push(lines[i]);
        i += 1;
      }
      out.append(table(doc, header, separator, rows));
      continue;
    }
    const item = LIST_ITEM.exec(line);
    if (item) {
      const ordered = /\d/.test(item[2]);
      const list = el(doc, ordered ? "ol" : "ul");
      if (ordered && Number.parseInt(item[2], 10) !== 1) list.start = Number.parseInt(item[2], 10);
      while (i < lines.length) {
        const current = LIST_ITEM.exec(lines[i]);
        if (!current || /\d/.test(current[2]) !== ordered) break;
        const parts = [current[3]];
        i += 1;
        // Continuation lines: indented text that starts no block of its own.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !LIST_ITEM.test(lines[i])) {
          parts.push(lines[i].trim());
          i += 1;
        }
        const li = el(doc, "li");
        renderInline(parts.join(" "), li, doc);
        list.append(li);
      }
      out.append(list);
      continue;
    }
    if (QUOTE.test(line)) {
      const parts = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        parts.push(QUOTE.exec(lines[i])[1]);
        i += 1;
      }
      const quote = el(doc, "blockquote");
      quote.append(render(parts.join("\n"), { doc, headingOffset }));
      out.append(quote);
      continue;
    }
    const parts = [line.trim()];
    i += 1;
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
      parts.push(lines[i].trim());
      i += 1;
    }
    const p = el(doc, "p");
    renderInline(parts.join(" "), p, doc);
    out.append(p);
  }
  return out;
}
