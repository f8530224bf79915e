// patchwarden sandbox page: renders the fake Slack's state and sends what a Slack client would send.
"use strict";

const S = { me: null, view: null, state: null, lastJson: "", modalKey: "", people: {}, channels: {}, polls: 0, renders: 0 };
const EMOJI = {
  white_check_mark: "✅", hourglass_flowing_sand: "⏳", hourglass: "⌛", no_entry: "⛔", tada: "🎉",
  warning: "⚠️", x: "❌", rewind: "⏪", alarm_clock: "⏰", rotating_light: "🚨", bell: "🔔", pencil2: "✏️",
  heavy_multiplication_x: "✖️", large_blue_circle: "🔵", rocket: "🚀", calendar: "📅", lock: "🔒",
  mega: "📣", construction: "🚧", white_circle: "⚪", red_circle: "🔴", large_green_circle: "🟢",
  arrows_counterclockwise: "🔄", hammer_and_wrench: "🛠️", mag: "🔍", test_tube: "🧪", shield: "🛡️",
  memo: "📝", scales: "⚖️", grey_question: "❔", question: "❓", large_yellow_circle: "🟡",
  large_orange_circle: "🟠", clipboard: "📋", electric_plug: "🔌", heavy_minus_sign: "➖",
  leftwards_arrow_with_hook: "↩️", no_entry_sign: "🚫", package: "📦", zzz: "💤", wave: "👋",
};

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// ---- mrkdwn ------------------------------------------------------------------------------------------
function escapeText(t) {
  // Slack text arrives with &amp; &lt; &gt; already escaped by the bot: keep those, escape anything else
  return t.replace(/&(?!(amp|lt|gt|quot);)/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}
function token(inner) {
  if (inner.startsWith("@")) {
    const id = inner.slice(1).split("|")[0];
    const p = S.people[id];
    return `<span class="mention">@${escapeText(p ? p.name : id)}</span>`;
  }
  if (inner.startsWith("#")) {
    const id = inner.slice(1).split("|")[0];
    return `<span class="mention">#${escapeText(S.channels[id] || id)}</span>`;
  }
  if (inner.startsWith("!date^")) {
    const [spec, fallback] = inner.split("|");
    const [, secs, fmt] = spec.split("^");
    const seconds = Number(secs);
    const local = Number.isFinite(seconds) ? slackDate(new Date(seconds * 1000), fmt || "{date_short} {time}") : "";
    return `<span class="date" title="${escapeText(fallback || "")}">${escapeText(local || fallback || "")}</span>`;
  }
  if (inner.startsWith("!")) return `<b>@${escapeText(inner.slice(1).split("|")[0])}</b>`;
  const [url, label] = inner.split("|");
  const archive = /\/archives\/([A-Z0-9]+)\/p(\d+)(\d{6})$/.exec(url);  // a permalink: jump there in the page
  if (archive) {
    return `<a href="#" class="jump" data-jump-channel="${escapeText(archive[1])}" data-jump-ts="${archive[2]}.${archive[3]}">${escapeText(label || "message")}</a>`;
  }
  if (/^https?:\/\//.test(url)) return `<a href="${escapeText(url)}" target="_blank" rel="noopener">${escapeText(label || url)}</a>`;
  return escapeText(`<${inner}>`);
}
// Slack's <!date^SECONDS^FORMAT|fallback> tokens, in the reader's zone (the zone is named, as Slack shows it)
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
function slackDate(d, fmt) {
  const day = (opts) => d.toLocaleDateString(undefined, opts);
  const now = S.state && S.state.now ? new Date(S.state.now) : new Date();
  const dayDiff = Math.round((new Date(d).setHours(0, 0, 0, 0) - new Date(now).setHours(0, 0, 0, 0)) / 864e5);
  const pretty = (opts) => (dayDiff === 0 ? "today" : dayDiff === 1 ? "tomorrow" : dayDiff === -1 ? "yesterday" : day(opts));
  const mins = Math.round((d - now) / 6e4);
  const ago = Math.abs(mins) < 60 ? `${Math.abs(mins)} minutes` : Math.abs(mins) < 2880 ? `${Math.round(Math.abs(mins) / 60)} hours` : `${Math.round(Math.abs(mins) / 1440)} days`;
  const parts = {
    date_num: d.toISOString().slice(0, 10),
    date: day({ year: "numeric", month: "long", day: "numeric" }),
    date_short: day({ year: "numeric", month: "short", day: "numeric" }),
    date_long: day({ weekday: "long", year: "numeric", month: "long", day: "numeric" }),
    date_pretty: pretty({ year: "numeric", month: "long", day: "numeric" }),
    date_short_pretty: pretty({ year: "numeric", month: "short", day: "numeric" }),
    date_long_pretty: pretty({ weekday: "long", year: "numeric", month: "long", day: "numeric" }),
    time: d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }),
    time_secs: d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    ago: mins >= 0 ? `in ${ago}` : `${ago} ago`,
  };
  const out = fmt.replace(/\{(\w+)\}/g, (m, name) => (name in parts ? parts[name] : m));
  return /\{time(_secs)?\}/.test(fmt) ? `${out} (${ZONE})` : out;
}
function mrkdwn(text) {
  if (!text) return "";
  // tokens become placeholders first, so *bold* and _italics_ around a <!date> or <@user> still apply
  const tokens = [];
  const held = text.replace(/<([^<>]+)>/g, (m, inner) => { tokens.push(token(inner)); return `\u0000${tokens.length - 1}\u0000`; });
  const html = format(escapeText(held)).replace(/\u0000(\d+)\u0000/g, (m, i) => tokens[Number(i)]);
  return html.replace(/\n/g, "<br>");
}
function format(t) {
  return t
    .replace(/```([\s\S]+?)```/g, "<pre>$1</pre>")
    .replace(/`([^`\n]+)`/g, "<code>$1</code>")
    .replace(/(^|[\s(])\*([^*\n]+)\*/g, "$1<b>$2</b>")
    .replace(/(^|[\s(])_([^_\n]+)_/g, "$1<i>$2</i>")
    .replace(/(^|[\s(])~([^~\n]+)~/g, "$1<s>$2</s>")
    .replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
}
function textObj(t) {
  if (!t) return "";
  return t.type === "mrkdwn" ? mrkdwn(t.text) : format(escapeText(t.text || ""));
}

// ---- API ---------------------------------------------------------------------------------------------
async function api(kind, body) {
  const token = document.querySelector('meta[name="pw-token"]')?.content || "";
  const resp = await fetch(`/api/${kind}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Sandbox-Token": token },
    body: JSON.stringify({ user: S.me, ...body }),
  });
  return resp.json();
}
async function refresh(force = false) {
  const resp = await fetch(`/api/state?user=${encodeURIComponent(S.me || "")}`);
  const state = await resp.json();
  S.polls += 1;
  S.state = state;
  renderClock();
  const { now, ...rest } = state;  // the clock moves every poll; only a real change re-renders the timeline
  const json = JSON.stringify(rest);
  if (!force && json === S.lastJson) return;
  S.lastJson = json;
  render();
}

// ---- Block Kit -----------------------------------------------------------------------------------------
function interactive(element, block, ctx) {
  const send = (action) => api("action", { ...ctx, block_id: block.block_id, action: { type: element.type, action_id: element.action_id, ...action } })
    .then((answer) => { if (answer && answer.reset) { S.modalKey = "-"; S.lastJson = ""; } return refresh(true); });
  if (element.type === "button") {
    return el("button", {
      class: element.style || "", "data-action-id": element.action_id,
      onclick: () => {
        const c = element.confirm;
        if (c && !window.confirm(`${c.title ? c.title.text + "\n" : ""}${c.text ? c.text.text.replace(/[*_]/g, "") : ""}`)) return;
        send({ value: element.value, text: element.text });
      },
    }, element.text ? element.text.text : "button");
  }
  if (element.type === "static_select" || element.type === "users_select") {
    const options = element.type === "users_select"
      ? Object.values(S.people).map((p) => ({ value: p.id, text: { text: `${p.name} (${p.role})` } }))
      : (element.options || []).concat(...(element.option_groups || []).map((g) => g.options));
    const select = el("select", {
      "data-action-id": element.action_id,
      onchange: (e) => {
        const value = e.target.value;
        if (element.type === "users_select") send({ selected_user: value });
        else { const o = options.find((x) => x.value === value); send({ selected_option: o }); }
      },
    }, el("option", { value: "" }, element.placeholder ? element.placeholder.text : "Choose…"),
    options.map((o) => el("option", { value: o.value }, o.text.text)));
    return select;
  }
  if (element.type === "datepicker") {
    return el("input", { type: "date", "data-action-id": element.action_id, value: element.initial_date || "",
      onchange: (e) => send({ selected_date: e.target.value }) });
  }
  if (element.type === "image") return el("img", { src: element.image_url, alt: element.alt_text, width: 24 });
  return el("span", { class: "context" }, `[${element.type}]`);
}

function renderBlock(block, ctx) {
  switch (block.type) {
    case "header": return el("div", { class: "block header", html: format(escapeText(block.text.text)) });
    case "divider": return el("hr", { class: "divider" });
    case "context":
      return el("div", { class: "block context" }, block.elements.map((e) =>
        e.type === "image" ? el("img", { src: e.image_url, alt: e.alt_text, width: 16 }) : el("span", { html: textObj(e) + " " })));
    case "section": {
      const node = el("div", { class: "block section" });
      if (block.text) node.append(el("div", { html: textObj(block.text) }));
      if (block.fields) node.append(el("div", { class: "fields" }, block.fields.map((f) => el("div", { html: textObj(f) }))));
      if (block.accessory) node.append(interactive(block.accessory, block, ctx));
      return node;
    }
    case "actions": return el("div", { class: "block actions" }, block.elements.map((e) => interactive(e, block, ctx)));
    case "image": return el("img", { class: "file", src: block.image_url, alt: block.alt_text });
    default: return el("div", { class: "block context" }, `[${block.type} block]`);
  }
}
function renderBlocks(blocks, ctx) { return (blocks || []).map((b) => renderBlock(b, ctx)); }

function renderMessage(m, channel) {
  const ctx = { source: "message", channel: m.channel || channel, ts: m.ts };
  const body = m.blocks && m.blocks.length ? renderBlocks(m.blocks, ctx) : [el("div", { html: mrkdwn(m.text) })];
  const files = (m.files || []).map((f) => f.url && /\.png$/.test(f.name)
    ? el("img", { class: "file", src: f.url, alt: f.title, "data-testid": "file-image" })
    : el("a", { href: f.url }, f.title || f.name));
  const node = el("div", { class: `msg${m.ephemeral ? " ephemeral" : ""}`, "data-ts": m.ts },
    el("span", { class: "who" }, "patchwarden"),
    m.ephemeral ? el("span", { class: "only-you" }, "Only visible to you") : null,
    body, files);
  if (m.replies && m.replies.length) node.append(el("div", { class: "thread" }, m.replies.map((r) => renderMessage(r, channel))));
  return node;
}

// ---- modal ---------------------------------------------------------------------------------------------
function inputField(block) {
  const e = block.element;
  let field;
  if (e.type === "plain_text_input") {
    field = e.multiline ? el("textarea", { maxlength: e.max_length }) : el("input", { type: "text", maxlength: e.max_length });
    field.value = e.initial_value || "";
    if (e.placeholder) field.placeholder = e.placeholder.text;
  } else if (e.type === "static_select" || e.type === "multi_static_select" || e.type === "users_select") {
    const options = e.type === "users_select"
      ? Object.values(S.people).map((p) => ({ value: p.id, text: { text: `${p.name} (${p.role})` } }))
      : e.options || [];
    field = el("select", { multiple: e.type === "multi_static_select" });
    if (e.type !== "multi_static_select") field.append(el("option", { value: "" }, "—"));
    const chosen = new Set([e.initial_user, e.initial_option && e.initial_option.value,
      ...(e.initial_options || []).map((o) => o.value)].filter(Boolean));
    for (const o of options) field.append(el("option", { value: o.value, selected: chosen.has(o.value) }, o.text.text));
  } else if (e.type === "datepicker") {
    field = el("input", { type: "date", value: e.initial_date || "" });
  } else {
    field = el("input", { type: "text", disabled: true, value: `[${e.type}]` });
  }
  field.dataset.kind = e.type;
  field.name = block.block_id;
  return el("div", { class: "input", "data-block-id": block.block_id },
    el("label", {}, block.label.text + (block.optional ? " (optional)" : "")), field,
    block.hint ? el("div", { class: "hint" }, block.hint.text) : null, el("div", { class: "error" }));
}
function readValue(field) {
  const kind = field.dataset.kind;
  if (kind === "multi_static_select") {
    const values = [...field.selectedOptions].map((o) => o.value);
    return values.length ? values : null;
  }
  return field.value.trim() === "" ? null : field.value;
}
function renderModal() {
  const modal = S.state && S.state.modal;
  const key = modal ? modal.id + JSON.stringify(modal.view) : "";
  if (key === S.modalKey) return;
  S.modalKey = key;
  const backdrop = $("#modal-backdrop"), box = $("#modal");
  box.innerHTML = "";
  if (!modal) { backdrop.hidden = true; return; }
  const view = modal.view;
  const ctx = { source: "modal", view_id: modal.id };
  const form = el("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const f of form.querySelectorAll("[name]")) values[f.name] = readValue(f);
    form.querySelectorAll(".input").forEach((n) => { n.classList.remove("has-error"); n.querySelector(".error").textContent = ""; });
    const answer = await api("submit", { view_id: modal.id, values });
    if (answer.errors) {
      for (const [blockId, msg] of Object.entries(answer.errors)) {
        const n = form.querySelector(`.input[data-block-id="${CSS.escape(blockId)}"]`);
        if (n) { n.classList.add("has-error"); n.querySelector(".error").textContent = msg; }
      }
      return;
    }
    if (answer.error) { form.querySelector(".notice").textContent = answer.error; return; }
    await refresh(true);
  } },
  el("h2", {}, view.title ? view.title.text : "Form"), el("div", { class: "notice" }),
  (view.blocks || []).map((b) => (b.type === "input" ? inputField(b) : renderBlock(b, ctx))),
  el("div", { class: "modal-buttons" },
    el("button", { type: "button", onclick: async () => { await api("close", { view_id: modal.id }); refresh(true); } },
      view.close ? view.close.text : "Cancel"),
    view.submit ? el("button", { type: "submit", class: "primary", "data-testid": "modal-submit" }, view.submit.text) : null));
  box.append(form);
  backdrop.hidden = false;
}

// ---- page ----------------------------------------------------------------------------------------------
function renderClock() {
  const st = S.state;
  const text = st && st.now ? `${new Date(st.now).toLocaleString()} (${ZONE})` : "";
  if ($("#clock").textContent !== text) $("#clock").textContent = text;
}
function render() {
  S.renders += 1;
  const st = S.state;
  $("#banner").textContent = st.banner;
  S.people = Object.fromEntries(st.people.map((p) => [p.id, p]));
  S.channels = Object.fromEntries(st.channels.map((c) => [c.id, c.name]));
  const who = $("#who");
  if (!who.options.length) {
    for (const p of st.people) who.append(el("option", { value: p.id }, `${p.name} — ${p.role}`));
    who.value = S.me;
  }
  $("#role").textContent = S.people[S.me] ? S.people[S.me].role : "";
  $("#ics").href = "/calendar.ics";  // served on the page's own port (the sandbox forwards it to the bot)
  $("#policy-note").textContent = st.policy_note || "";
  renderClock();
  const list = $("#channels");
  list.innerHTML = "";
  for (const c of st.channels) {
    list.append(el("li", {}, el("a", { href: "#", class: S.view === c.id ? "active" : "", "data-channel": c.id,
      onclick: (e) => { e.preventDefault(); S.view = c.id; render(); } }, `# ${c.name}`)));
  }
  $("#home-link").className = S.view === "home" ? "active" : "";
  const timeline = $("#timeline");
  const atBottom = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 20;
  timeline.innerHTML = "";
  if (S.view === "home") {
    $("#title").textContent = "patchwarden · Home";
    $("#composer").hidden = true;
    const home = st.home;
    timeline.append(home ? el("div", { "data-testid": "home" }, renderBlocks(home.blocks, { source: "home" }))
      : el("p", { class: "context" }, "Loading your Home tab…"));
  } else {
    $("#title").textContent = `# ${S.channels[S.view] || S.view}`;
    $("#composer").hidden = false;
    for (const m of st.messages[S.view] || []) timeline.append(renderMessage(m, S.view));
    if (atBottom) timeline.scrollTop = timeline.scrollHeight;
  }
  renderModal();
}

async function openHome() {
  S.view = "home";
  render();
  await api("home", {});
  await refresh(true);
}

async function main() {
  const first = await (await fetch("/api/state")).json();
  const params = new URLSearchParams(location.search);
  S.me = params.get("user") || first.people[0].id;
  S.view = params.get("channel") || first.channels[0].id;
  $("#who").addEventListener("change", async (e) => {
    S.me = e.target.value;
    S.modalKey = "-";
    if (S.view === "home") await api("home", {});
    await refresh(true);
  });
  $("#home-link").addEventListener("click", (e) => { e.preventDefault(); openHome(); });
  document.addEventListener("click", (e) => {  // permalinks: open the channel and show the message
    const link = e.target.closest("a.jump");
    if (!link) return;
    e.preventDefault();
    S.view = link.dataset.jumpChannel;
    render();
    const target = document.querySelector(`.msg[data-ts="${CSS.escape(link.dataset.jumpTs)}"]`);
    if (target) { target.scrollIntoView({ block: "center" }); target.classList.add("highlight"); }
  });
  for (const button of document.querySelectorAll("[data-hours], [data-next-window]")) {
    button.addEventListener("click", async () => {
      const buttons = document.querySelectorAll("#skip button");
      buttons.forEach((b) => { b.disabled = true; });
      const body = button.dataset.nextWindow !== undefined ? { next_window: true } : { hours: Number(button.dataset.hours) };
      const answer = await api("clock", body);
      buttons.forEach((b) => { b.disabled = false; });
      if (answer.error) alert(answer.error);
      await refresh(true);
    });
  }
  $("#composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $("#message"), text = box.value.trim();
    if (!text) return;
    box.value = "";
    if (!text.startsWith("/")) { alert("The sandbox only sends slash commands: try /patch help"); return; }
    if (S.view === "home" || !S.channels[S.view]) { alert("Pick a channel first: commands are typed in a channel."); return; }
    const answer = await api("command", { channel: S.view, text });
    if (answer.error) alert(answer.error);
    await refresh(true);
  });
  console.warn("patchwarden SANDBOX: a local fake Slack workspace; nothing here reaches Slack.");
  await refresh(true);
  setInterval(() => refresh().catch(() => {}), 500);
}
main();
