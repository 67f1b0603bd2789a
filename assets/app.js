// ticket-audit's page script: local times on hover, and live updates from /api/v1/stream.
// Everything from the server is put in the page with textContent, never as HTML.
"use strict";

function localTitles(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) t.title = d.toLocaleString() + " (your time)";
  }
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function timeEl(iso) {
  const t = el("time", null, iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC"));
  t.setAttribute("datetime", iso);
  return t;
}

function deliveryLink(id) {
  const a = el("a", null, "delivery " + id);
  a.href = "/ui/deliveries/" + encodeURIComponent(id);
  return a;
}

const LABELS = {
  user_message: "User", agent_message: "Agent", command_proposed: "Command proposed",
  command_executed: "Command executed", ticket_created: "Ticket created", action: "Action",
};

function entryItem(e) {
  const li = el("li", "entry new " + (e.kind.endsWith("_message") ? e.kind : e.kind.startsWith("command") ? "command" : "event"));
  li.dataset.id = e.id;
  li.id = "e" + e.id;
  const h = el("header");
  h.append(el("span", "who-said", LABELS[e.kind] || e.kind), timeEl(e.at), deliveryLink(e.delivery_id));
  li.append(h);
  if (e.content !== null) li.append(el("p", "message", e.content));
  if (e.command !== null) li.append(el("pre", "out", e.command));
  if (e.result !== null) li.append(el("pre", "out", e.result));
  if (e.action !== null) {
    const p = el("p", null, e.action + (e.status_code !== null ? " · status " + e.status_code : ""));
    if (e.success === false || (e.status_code !== null && (e.status_code < 200 || e.status_code > 299))) {
      p.append(" ", el("span", "badge bad", e.success === false ? "failed" : "non-2xx"));
      li.classList.add("failed");
    }
    li.append(p);
  }
  li.append(el("p", "hint", "New: reload for the risk and outcome classification."));
  return li;
}

function commandRow(c) {
  const tr = el("tr", "new");
  tr.dataset.id = c.id;
  const cell = (label, child) => {
    const td = el("td");
    td.dataset.label = label;
    if (child instanceof Node) td.append(child); else td.textContent = child === null ? "" : child;
    tr.append(td);
  };
  cell("Recorded", timeEl(c.recorded_at));
  let ticket = "";
  if (c.ticket !== null) {
    ticket = el("a", null, c.ticket);
    ticket.href = "/ui/tickets/" + encodeURIComponent(c.ticket);
  }
  cell("Ticket", ticket);
  cell("Tenant", c.tenant_id);
  cell("Agent", c.agent_name);
  cell("Command", el("pre", null, c.command));
  cell("Executed", c.executed ? "yes" : "proposed");
  cell("Outcome", el("span", "hint", "reload"));
  cell("Risk", el("span", "hint", "reload"));
  cell("Result", el("pre", null, c.result === null ? "" : c.result.slice(0, 300)));
  return tr;
}

function live() {
  const url = document.body.dataset.stream;
  if (!url || !window.EventSource) return;
  const status = document.getElementById("live");
  const set = (state, text) => {
    document.body.dataset.live = state;
    if (status) { status.dataset.state = state; status.textContent = text; }
  };
  const es = new EventSource(url);
  es.onopen = () => set("open", "Live: new items appear as they are recorded.");
  es.onerror = () => set("closed", es.readyState === EventSource.CLOSED
    ? "Live updates are unavailable: reload the page to try again."
    : "Live updates interrupted; reconnecting…");
  const timeline = document.getElementById("timeline");
  if (timeline) {
    es.addEventListener("entry", (m) => {
      const e = JSON.parse(m.data);
      if (document.getElementById("e" + e.id)) return;
      const li = entryItem(e);
      timeline.append(li);
      localTitles(li);
      const empty = document.getElementById("timeline-empty");
      if (empty) empty.remove();
    });
  }
  const table = document.getElementById("commands");
  if (table) {
    const f = table.dataset;
    es.addEventListener("command", (m) => {
      const c = JSON.parse(m.data);
      if (f.tenant && c.tenant_id !== f.tenant) return;
      if (f.agent && c.agent_name !== f.agent) return;
      if (f.ticket && c.ticket !== f.ticket) return;
      if (f.executed && String(c.executed) !== f.executed) return;
      if (f.contains && !c.command.includes(f.contains)) return;
      if (table.querySelector('tr[data-id="' + CSS.escape(c.id) + '"]')) return;
      const tr = commandRow(c);
      table.tBodies[0].prepend(tr);
      localTitles(tr);
      const empty = document.getElementById("commands-empty");
      if (empty) empty.remove();
    });
  }
}

// Filter forms leave their empty fields out of the address, so shared links stay short.
function tidyForms() {
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if (field.name && field.value === "") field.disabled = true;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTitles(document);
  tidyForms();
  live();
});
