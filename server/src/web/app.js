// Log out through the API with the session's CSRF token, then back to the login page.
document.getElementById("logout")?.addEventListener("click", async (e) => {
  const csrf = e.currentTarget.dataset.csrf || "";
  await fetch("/api/logout", { method: "POST", headers: { "x-csrf-token": csrf } });
  location.href = "/login";
});

// The language switch keeps the rest of the address (the month shown, for one).
const switcher = document.querySelector("header a[hreflang]");
if (switcher) {
  const params = new URLSearchParams(location.search);
  params.set("lang", switcher.hreflang);
  switcher.href = `${location.pathname}?${params}`;
}

// The site page: actions through the API with the session's CSRF token; the picture and
// the gateways' acknowledgement refreshed every two seconds.
const csrf = () => document.getElementById("logout")?.dataset.csrf || "";
const say = (text) => { const r = document.getElementById("action-result"); if (r) r.textContent = text; };
// `instead`, given the answer, may return what to say in place of `sent` (and not reload).
async function act(method, url, body, instead) {
  const r = document.getElementById("action-result");
  const res = await fetch(url, {
    method,
    // Warnings and refusals come back in the page's language.
    headers: {
      "content-type": "application/json",
      "x-csrf-token": csrf(),
      "accept-language": document.documentElement.lang,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  // A session that ended meanwhile: log in again and come back to this page.
  if (res.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    return;
  }
  const answer = res.status === 204 ? {} : await res.json().catch(() => ({}));
  // Someone else did it first (a colleague released the override, acknowledged the fault):
  // say so in the page's language and show the page as it is now.
  if (res.status === 409 && r?.dataset.conflict) {
    say(r.dataset.conflict);
    setTimeout(() => location.reload(), 2500);
    return;
  }
  if (res.status === 403 && r?.dataset.forbidden) {
    say(`${r.dataset.forbidden} (${answer.error?.message || res.status})`);
    return;
  }
  const other = res.ok && instead?.(answer);
  if (!res.ok) {
    say(`${r?.dataset.failed || "Failed"}: ${answer.error?.message || res.status}`);
  } else if (other) {
    say(other);
  } else {
    say([r?.dataset.sent || "Sent", ...(Array.isArray(answer.warnings) ? answer.warnings : [])].join(" "));
    setTimeout(() => location.reload(), 1500);
  }
}
document.getElementById("override")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  act("POST", `/api/sites/${f.dataset.site}/override`, {
    scene: f.scene.value, minutes: Number(f.minutes.value), reason: f.reason.value,
  });
});
document.getElementById("blackout")?.addEventListener("click", (e) => {
  const b = e.currentTarget;
  const field = document.getElementById("reason");
  if (!field.value.trim()) {
    say(b.dataset.needReason);
    field.focus();
    return;
  }
  if (!confirm(b.dataset.confirm)) return;
  const reason = field.value;
  act("POST", `/api/sites/${b.dataset.site}/blackout`, { reason, confirm: true });
});
document.querySelectorAll("button.release").forEach((b) =>
  b.addEventListener("click", () => act("DELETE", `/api/overrides/${b.dataset.override}`)));
// Live pictures: each `img[data-live]` is fetched again past any cache and swapped in.
async function refresh(img) {
  const res = await fetch(img.dataset.live, { cache: "no-store" });
  if (!res.ok) return;
  const old = img.src;
  img.src = URL.createObjectURL(await res.blob());
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
}
const live = document.querySelectorAll("img[data-live]");
if (live.length > 0) setInterval(() => live.forEach(refresh), live.length > 1 ? 5000 : 2000);
const gateways = document.getElementById("gateways");
if (gateways) {
  setInterval(async () => {
    const res = await fetch("/api/gateways");
    if (!res.ok) return;
    for (const g of await res.json()) {
      const span = gateways.querySelector(`[data-gateway="${g.gateway}"]`);
      const status = span?.querySelector("span");
      if (status) status.textContent = `: ${g.in_sync ? gateways.dataset.acked : gateways.dataset.waiting}`;
    }
  }, 2000);
}

// Each fixture's computed colour beside the site's picture, refreshed with it.
const fixtureList = document.getElementById("fixture-list");
async function showFixtures() {
  const res = await fetch(`/api/sites/${fixtureList.dataset.site}/preview.json?width=800`);
  if (!res.ok) return;
  const picture = await res.json();
  fixtureList.replaceChildren(...picture.fixtures.map((f) => {
    const li = document.createElement("li");
    li.dataset.fixture = f.id;
    li.dataset.colour = f.colour;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = f.colour;
    li.append(swatch, ` ${f.id} ${f.colour}`);
    return li;
  }));
}
if (fixtureList) { showFixtures(); setInterval(showFixtures, 2000); }

// Faults: acknowledge through the API.
document.querySelectorAll("button.ack").forEach((b) =>
  b.addEventListener("click", () => act("POST", `/api/faults/${b.dataset.fault}/acknowledge`)));

// API tokens: revoke one, after a confirmation.
document.querySelectorAll("button.revoke-token").forEach((b) =>
  b.addEventListener("click", () => {
    if (confirm(b.dataset.confirm)) act("DELETE", b.dataset.url);
  }));

// Schedules: add a date to a calendar.
document.getElementById("add-date")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  act("POST", `/api/calendars/${f.calendar.value}/dates`, {
    dates: [{ date: f.date.value, name: f.name.value }],
  }, (answer) => answer.already?.length ? `${f.dataset.already} ${answer.already.join(", ")}` : null);
});

// The city-wide action, after a confirmation.
document.getElementById("city-action")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const f = e.currentTarget;
  if (!confirm(f.dataset.confirm)) return;
  const kind = f.kind.value;
  act("POST", "/api/overrides", {
    scope: { kind: "city" }, kind,
    brightness_pct: kind === "dim" ? Number(f.brightness.value) : undefined,
    nights: { from: f.from.value, to: f.to.value }, reason: f.reason.value,
  });
});

// The library editor: line numbers beside the text, each problem marked at its line, a
// check through the core before anything is saved.
const editor = document.getElementById("editor");
if (editor) {
  const text = editor.querySelector("textarea");
  const gutter = editor.querySelector(".gutter");
  const list = document.getElementById("diagnostics");
  const result = document.getElementById("check-result");
  const lang = editor.dataset.lang;
  const marks = () => {
    const bad = new Map();
    list.querySelectorAll("li[data-line]").forEach((li) => bad.set(Number(li.dataset.line), li.className));
    const lines = text.value.split("\n").length;
    gutter.innerHTML = "";
    for (let n = 1; n <= lines; n++) {
      const row = document.createElement("div");
      row.textContent = n;
      if (bad.has(n)) row.className = bad.get(n);
      gutter.append(row);
    }
    gutter.scrollTop = text.scrollTop;
  };
  const goTo = (line, column) => {
    const lines = text.value.split("\n");
    let at = 0;
    for (let k = 0; k < line - 1 && k < lines.length; k++) at += lines[k].length + 1;
    text.focus();
    text.setSelectionRange(at + column - 1, at + (lines[line - 1]?.length ?? 0));
    const height = text.scrollHeight / Math.max(lines.length, 1);
    text.scrollTop = Math.max(0, (line - 5) * height);
  };
  const show = (report) => {
    const mine = report.diagnostics.filter((d) => d.file === editor.dataset.path);
    const others = report.diagnostics.length - mine.length;
    list.replaceChildren(...mine.map((d) => {
      const li = document.createElement("li");
      li.className = d.severity;
      li.dataset.line = d.line ?? 1;
      const go = document.createElement("button");
      go.type = "button";
      go.className = "goto";
      go.textContent = `${editor.dataset.line} ${d.line ?? 1}`;
      go.addEventListener("click", () => goTo(d.line ?? 1, d.column ?? 1));
      const title = document.createElement("strong");
      title.textContent = d.title;
      const field = document.createElement("code");
      field.textContent = d.path;
      li.append(go, " ", title, " ", field, ` ${d.message}`);
      return li;
    }));
    text.setAttribute("aria-invalid", report.errors > 0 ? "true" : "false");
    result.textContent = report.diagnostics.length === 0 ? editor.dataset.ok
      : others > 0 ? `${editor.dataset.others}: ${others}` : "";
    marks();
  };
  const send = async (method, url, body) => {
    const res = await fetch(url, {
      method, headers: { "content-type": "application/json", "x-csrf-token": csrf() }, body: JSON.stringify(body),
    });
    const answer = await res.json().catch(() => ({}));
    if (answer.error?.diagnostics) {
      const errors = answer.error.diagnostics.filter((d) => d.severity === "error").length;
      show({ diagnostics: answer.error.diagnostics, errors });
      if (method === "PUT") result.textContent = `${editor.dataset.notSaved} (${errors})`;
      return false;
    }
    if (!res.ok) { result.textContent = `${editor.dataset.failed}: ${answer.error?.message || res.status}`; return false; }
    show(answer);
    return true;
  };
  text.addEventListener("input", marks);
  text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
  list.querySelectorAll("button.goto").forEach((b) =>
    b.addEventListener("click", () => goTo(Number(b.dataset.line), Number(b.dataset.column))));
  document.getElementById("check").addEventListener("click", () =>
    send("POST", `/api/library/check?lang=${lang}`, { files: [{ path: editor.dataset.path, text: text.value }] }));
  editor.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await send("PUT", `/api/library/files/${editor.dataset.path}?lang=${lang}`, { text: text.value })) {
      result.textContent = editor.dataset.saved;
      // The page again, for the animation of what was saved (its address names its version).
      setTimeout(() => location.reload(), 1500);
    }
  });
  marks();
}
