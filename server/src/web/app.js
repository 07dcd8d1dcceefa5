// Log out through the API with the session's CSRF token, then back to the login page.
document.getElementById("logout")?.addEventListener("click", async (e) => {
  const csrf = e.currentTarget.dataset.csrf || "";
  await fetch("/api/logout", { method: "POST", headers: { "x-csrf-token": csrf } });
  location.href = "/login";
});

// The site page: actions through the API with the session's CSRF token; the picture and
// the gateways' acknowledgement refreshed every two seconds.
const csrf = () => document.getElementById("logout")?.dataset.csrf || "";
const say = (text) => { const r = document.getElementById("action-result"); if (r) r.textContent = text; };
async function act(method, url, body) {
  const r = document.getElementById("action-result");
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json", "x-csrf-token": csrf() },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) {
    say(`${r?.dataset.failed || "Failed"}: ${answer.error?.message || res.status}`);
  } else {
    say([r?.dataset.sent || "Sent", ...(answer.warnings || [])].join(" "));
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
  if (!confirm(b.dataset.confirm)) return;
  const reason = document.getElementById("reason")?.value || "dashboard";
  act("POST", `/api/sites/${b.dataset.site}/blackout`, { reason, confirm: true });
});
document.querySelectorAll("button.release").forEach((b) =>
  b.addEventListener("click", () => act("DELETE", `/api/overrides/${b.dataset.override}`)));
const preview = document.getElementById("preview");
const gateways = document.getElementById("gateways");
if (preview || gateways) {
  setInterval(async () => {
    if (preview) preview.src = `/api/sites/${preview.dataset.site}/preview.png?width=800&t=${Date.now()}`;
    if (gateways) {
      const res = await fetch("/api/gateways");
      if (!res.ok) return;
      for (const g of await res.json()) {
        const span = gateways.querySelector(`[data-gateway="${g.gateway}"]`);
        const status = span?.querySelector("span");
        if (status) status.textContent = `: ${g.in_sync ? gateways.dataset.acked : gateways.dataset.waiting}`;
      }
    }
  }, 2000);
}
