// The card login page: find the bridge agent on this computer, have it authenticate
// with the server's challenge (the PIN is typed into the agent's own window), post the
// token, and — when the site asks for the four attributes — have the agent sign the
// release statement with the signature key. Every state shows a message from the page's
// <template data-state> elements (Japanese or English, rendered by the server).
(function () {
  "use strict";
  const root = document.getElementById("card-login");
  if (!root) return;
  const status = document.getElementById("login-status");
  const start = document.getElementById("login-start");
  const cancelButton = document.getElementById("login-cancel");
  const ports = root.dataset.ports.split(" ");
  const csrf = root.dataset.csrf;
  let running = false;

  function show(state, message) {
    const template = root.querySelector('template[data-state="' + state + '"]') ||
      root.querySelector('template[data-state="error"]');
    status.replaceChildren(template.content.cloneNode(true));
    if (message) {
      const p = document.createElement("p");
      p.className = "login-error";
      p.textContent = message;
      status.replaceChildren(p);
    }
    status.dataset.state = state;
  }

  function offerRetry() {
    const template = root.querySelector('template[data-state="retry"]');
    status.appendChild(template.content.cloneNode(true));
    status.querySelector("button.retry").addEventListener("click", run);
    status.focus();
  }

  class Stop extends Error {
    constructor(state, message) { super(state); this.state = state; this.detail = message; }
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Stop("error", data.message || response.statusText);
    return data;
  }

  async function findAgent() {
    for (const port of ports) {
      const base = "http://127.0.0.1:" + port;
      try {
        const response = await fetch(base + "/version", {signal: AbortSignal.timeout(1500)});
        if (response.ok && (await response.json()).name === "kakehashi-bridge") return base;
      } catch (e) { /* not on this port */ }
    }
    throw new Stop("no-agent");
  }

  // A card still being powered up (just put in the reader) or held a moment by another
  // program is waited for briefly; not longer, or the agent's window would open too long
  // after the click for the browser to allow it (the person then presses again).
  const CARD_WAIT_MS = 4000;

  async function checkCard(agent) {
    for (let waited = 0; ; waited += 500) {
      const answer = await (await fetch(agent + "/status")).json();
      if (answer.card) {
        if (answer.tries_left && answer.tries_left.auth === 0) throw new Stop("pin_blocked");
        return;
      }
      const reason = answer.error || "no_card";
      if (!["no_card", "card_in_use"].includes(reason) || waited >= CARD_WAIT_MS) throw new Stop(reason);
      show(reason);
      await sleep(500);
    }
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  // An operation this tab left waiting (a reload, a crash) would keep the agent busy for
  // minutes: the tab remembers its pending operation and withdraws it before the next.
  const PENDING = "kakehashi-agent-operation";

  async function withdrawLeftover() {
    const leftover = sessionStorage.getItem(PENDING);
    if (!leftover) return;
    sessionStorage.removeItem(PENDING);
    try { await fetch(leftover, {method: "DELETE"}); } catch (e) { /* the agent is gone */ }
  }

  async function operate(agent, body, waitingState) {
    await withdrawLeftover();
    const created = await fetch(agent + "/operations", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    if (created.status === 409) throw new Stop("busy");
    if (!created.ok) throw new Stop("error");
    const operation = await created.json();
    sessionStorage.setItem(PENDING, agent + "/operations/" + operation.id);
    const popup = window.open(operation.consent_url, "kakehashi-agent", "popup,width=520,height=720");
    if (!popup) {
      await fetch(agent + "/operations/" + operation.id, {method: "DELETE"});
      throw new Stop("popup-blocked");
    }
    show(waitingState);
    for (;;) {
      await sleep(400);
      const answer = await (await fetch(agent + "/operations/" + operation.id)).json();
      if (answer.status !== "awaiting_consent" && answer.status !== "in_progress") {
        sessionStorage.removeItem(PENDING);
      }
      if (answer.status === "done") return answer.result;
      if (answer.status === "failed") throw new Stop(answer.error || "error");
      if (answer.status === "cancelled") throw new Stop("cancelled");
      if (answer.error === "not_found") throw new Stop("cancelled");
      if (popup.closed && answer.status === "awaiting_consent") {
        await fetch(agent + "/operations/" + operation.id, {method: "DELETE"});
        throw new Stop("cancelled");
      }
    }
  }

  function leave(url) {
    show("redirecting");
    window.location.assign(url);
  }

  async function run() {
    if (running) return;
    running = true;
    start.disabled = true;
    try {
      show("finding");
      const agent = await findAgent();
      await checkCard(agent);
      // The page came with a single-use challenge; a retry asks the server for a new one.
      let challenge = root.dataset.challenge;
      root.dataset.challenge = "";
      if (!challenge) challenge = (await post(root.dataset.challengeUrl)).challenge;
      const token = await operate(agent, {type: "authenticate", challenge: challenge}, "consent");
      show("verifying");
      let answer = await post(root.dataset.cardUrl, {token: token});
      // The signature key's turn: the attribute release, then a document to sign.
      while (answer.next === "sign") {
        const signed = await operate(agent, {type: "sign", digest: answer.digest, text: answer.text},
                                     answer.purpose === "transaction" ? "transaction" : "release");
        show("verifying");
        answer = await post(root.dataset.releaseUrl, signed);
      }
      if (answer.redirect) {
        if (answer.error) show("error", answer.message);
        leave(answer.redirect);
        return;
      }
      throw new Stop("error");
    } catch (error) {
      if (error instanceof Stop) show(error.state, error.detail);
      else show("error");
      offerRetry();
    } finally {
      running = false;
      start.disabled = false;
    }
  }

  start.addEventListener("click", run);
  cancelButton.addEventListener("click", async function () {
    try {
      const answer = await post(root.dataset.cancelUrl);
      leave(answer.redirect);
    } catch (error) {
      show("error", error.detail);
    }
  });
  // The button is disabled in the page until now: a click before this script ran was lost.
  start.disabled = false;
})();
