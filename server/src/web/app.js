// Log out through the API with the session's CSRF token, then back to the login page.
document.getElementById("logout")?.addEventListener("click", async (e) => {
  const csrf = e.currentTarget.dataset.csrf || "";
  await fetch("/api/logout", { method: "POST", headers: { "x-csrf-token": csrf } });
  location.href = "/login";
});
