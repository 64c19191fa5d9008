// The teller screen: look a customer up (POST /v1/decide at BRANCH_TELLER), show the decision for the teller,
// record Accept / Decline / Not now (POST /v1/outcomes). The decision's texts come from the service in the
// customer's language; the page's own words come from strings.json. Rendering reads fields defensively: a newer
// service may send more than this page knows about, and the JSON mapping leaves out fields at their default.
"use strict";

(() => {
  const FALLBACK_LANGUAGE = "en";
  const OUTCOMES = [
    ["ACCEPTED", "accept", "accept"],
    ["DECLINED", "decline", "decline"],
    ["IGNORED", "not_now", "not-now"],
  ];
  // A visit ends when another customer is looked up, or after this long without a lookup.
  const VISIT_IDLE_MS = 30 * 60 * 1000;
  const state = {
    config: { languages: [FALLBACK_LANGUAGE], sensitive: {}, continuity: {} },
    strings: {},
    language: FALLBACK_LANGUAGE, // the page's own words
    customerId: null,
    decision: null,
    visit: { customerId: null, requestId: "", lastLookUp: 0 },
  };
  const $ = (id) => document.getElementById(id);

  // -- words ---------------------------------------------------------------------------------------------

  function text(key, values = {}) {
    const words = state.strings[state.language] || state.strings[FALLBACK_LANGUAGE] || {};
    const template = words[key] ?? (state.strings[FALLBACK_LANGUAGE] || {})[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : ""));
  }

  function supported(language) {
    return Object.prototype.hasOwnProperty.call(state.strings, language) ? language : FALLBACK_LANGUAGE;
  }

  function setLanguage(language) {
    state.language = supported(language);
    document.documentElement.lang = state.language;
    document.title = text("page_title");
    for (const node of document.querySelectorAll("[data-text]")) node.textContent = text(node.dataset.text);
    for (const radio of document.querySelectorAll('input[name="language"]')) {
      radio.checked = radio.value === state.language;
    }
    if (state.decision) renderDecision(state.decision);
  }

  // -- talking to the service --------------------------------------------------------------------------

  function newRequestId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // One visit, one decision: looking the same customer up again, or switching the language, sends the visit's
  // request id again, and the service answers with the decision it made (retold in the language asked for)
  // instead of making offers anew, which the contact policy would count against the customer.
  function visitRequestId(customerId) {
    const now = Date.now();
    const visit = state.visit;
    if (visit.customerId !== customerId || now - visit.lastLookUp > VISIT_IDLE_MS) {
      state.visit = { customerId, requestId: newRequestId(), lastLookUp: now };
    } else {
      visit.lastLookUp = now;
    }
    return state.visit.requestId;
  }

  async function postJson(path, body) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 8000);
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      let payload = {};
      try {
        payload = await response.json();
      } catch (_) {
        payload = {};
      }
      return { status: response.status, body: payload };
    } catch (_) {
      return { status: 0, body: {} }; // no answer at all
    } finally {
      clearTimeout(timer);
    }
  }

  // The live region is read out by screen readers; `quiet` keeps it off the screen when the page already shows
  // the same words elsewhere (the degraded banner).
  function say(message, kind = "info", { quiet = false } = {}) {
    const status = $("status");
    status.className = `status ${kind}${quiet ? " visually-hidden" : ""}`;
    status.textContent = "";
    if (!message) return;
    for (const [i, line] of (Array.isArray(message) ? message : [message]).entries()) {
      const p = document.createElement("p");
      p.textContent = line;
      if (i > 0) p.className = "detail";
      status.append(p);
    }
  }

  function markInput(invalid) {
    const input = $("customer-id");
    if (invalid) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  // -- lookup ------------------------------------------------------------------------------------------

  async function lookUp(customerId, language, { moveFocus = true } = {}) {
    if (!customerId) {
      showNothing();
      markInput(true);
      say(text("empty_id"), "error");
      $("customer-id").focus();
      return;
    }
    markInput(false);
    say(text("looking_up", { id: shortId(customerId) }), "info");
    $("lookup-button").disabled = true;
    const request = {
      customerId,
      touchpoint: state.config.touchpoint || "BRANCH_TELLER",
      requestId: visitRequestId(customerId),
    };
    if (language) request.context = { language };
    const reply = await postJson("/v1/decide", request);
    $("lookup-button").disabled = false;
    if (reply.status === 200) {
      state.customerId = customerId;
      state.decision = reply.body;
      const decided = (reply.body.explanation || {}).language;
      setLanguage(language || decided || FALLBACK_LANGUAGE); // renders the decision
      announceDecision();
      if (moveFocus) $("greeting").focus(); // the next Tab reaches Accept
      return;
    }
    showNothing();
    const error = reply.body.error || {};
    if (reply.status === 400 && error.field === "customer_id") {
      markInput(true);
      say([text("invalid_id"), error.message || ""], "error");
      $("customer-id").focus();
    } else if (reply.status === 0 || reply.status === 503) {
      say(text("unavailable"), "error");
    } else {
      say(text("failed", { message: error.message || `HTTP ${reply.status}` }), "error");
    }
  }

  function shortId(id) {
    return id.length > 40 ? `${id.slice(0, 40)}… (${id.length})` : id;
  }

  function showNothing() {
    state.customerId = null;
    state.decision = null;
    $("decision").hidden = true;
  }

  function announceDecision() {
    const d = state.decision;
    const codes = d.degradedCodes || [];
    if (codes.includes("unknown_customer")) {
      say(text("unknown_customer", { id: shortId(state.customerId) }), "warning", { quiet: true });
    } else if (d.degraded) {
      say(text("degraded"), "warning", { quiet: true });
    } else {
      say(text("shown", { id: state.customerId }), "info");
    }
  }

  // -- the decision ------------------------------------------------------------------------------------

  function renderDecision(d) {
    const explanation = d.explanation || {};
    const actions = Array.isArray(d.actions) ? d.actions : [];
    const decisionLanguage = explanation.language || FALLBACK_LANGUAGE;
    const section = $("decision");
    section.hidden = false;
    section.dataset.decisionId = d.decisionId || "";

    $("greeting").textContent = explanation.greeting || "";
    $("greeting").lang = decisionLanguage;
    $("customer-line").textContent = text("customer_line", { id: shortId(state.customerId || "") });

    const degraded = $("degraded");
    const codes = d.degradedCodes || [];
    degraded.hidden = !d.degraded;
    $("degraded-summary").textContent = codes.includes("unknown_customer")
      ? text("unknown_customer", { id: shortId(state.customerId || "") })
      : text("degraded");
    $("degraded-reason").textContent = d.degradedReason || "";

    const notes = splitExplanation(explanation.text || "", actions[0], decisionLanguage);
    renderTopAction(actions[0], notes.why, decisionLanguage);
    renderMoreActions(actions.slice(1), decisionLanguage);
    renderContinuity(openItems(d, notes.continuity), decisionLanguage);
    renderPrivacy();
    renderReasons(explanation.topFeatures || [], decisionLanguage);
    $("meta").textContent = text("meta", { decision: d.decisionId || "", model: d.modelVersion || "" });
  }

  // The agent text reads "<what to say> <why> <open problem> <pending application>"; the continuity notes begin
  // with the markers the service's own templates use (from /teller/config.json).
  function splitExplanation(fullText, top, language) {
    let rest = fullText;
    if (top && top.message && rest.startsWith(top.message)) rest = rest.slice(top.message.length).trim();
    const markers = (state.config.continuity || {})[language] || [];
    const starts = markers
      .map((marker) => (marker ? rest.indexOf(marker) : -1))
      .filter((i) => i >= 0)
      .sort((a, b) => a - b);
    if (!starts.length) return { why: rest, continuity: [] };
    const continuity = starts.map((start, i) => rest.slice(start, starts[i + 1]).trim()).filter(Boolean);
    return { why: rest.slice(0, starts[0]).trim(), continuity };
  }

  function openItems(d, fromText) {
    // A service that lists open items as their own field is preferred to the notes in the text.
    const explanation = d.explanation || {};
    const listed = [d.openItems, d.continuity, explanation.openItems, explanation.continuity].find(Array.isArray);
    if (!listed) return fromText;
    return listed
      .map((item) => {
        if (typeof item === "string") return item;
        if (!item || typeof item !== "object") return "";
        const body = item.text || item.description || item.summary || item.title || "";
        const label = item.label || "";
        return label && body ? `${label}: ${body}` : body || label;
      })
      .filter(Boolean);
  }

  function actionCard(action, language, primary) {
    const card = document.createElement(primary ? "article" : "li");
    card.className = primary ? "action primary" : "action";
    card.dataset.actionId = action.actionId || "";
    const title = document.createElement(primary ? "p" : "h4");
    title.className = "action-title";
    title.lang = language;
    title.textContent = action.title || action.actionId || "";
    if (action.mandatory) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = text("mandatory");
      title.append(" ", badge);
    }
    card.append(title);
    if (action.message) {
      const message = document.createElement("p");
      message.className = "action-message";
      message.lang = language;
      message.textContent = action.message;
      card.append(message);
    }
    return card;
  }

  function outcomeButtons(card, action) {
    const title = action.title || action.actionId || "";
    const group = document.createElement("div");
    group.className = "outcome-buttons";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", text("actions_for", { title }));
    const result = document.createElement("p");
    result.className = "outcome-result";
    const recorded = (state.decision.recorded || {})[action.actionId];
    for (const [outcome, key, css] of OUTCOMES) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `outcome ${css}`;
      button.textContent = text(key);
      button.setAttribute("aria-label", `${text(key)}: ${title}`);
      button.dataset.outcome = outcome;
      button.addEventListener("click", () => record(action, outcome, group, result));
      if (recorded) {
        button.disabled = true;
        button.setAttribute("aria-pressed", String(recorded.outcome === outcome));
      }
      group.append(button);
    }
    if (recorded) result.textContent = recordedText(recorded);
    card.append(group, result);
  }

  function renderTopAction(action, why, language) {
    const holder = $("top-action");
    holder.textContent = "";
    if (!action) {
      const none = document.createElement("p");
      none.className = "action-title";
      none.textContent = text("no_actions");
      holder.append(none);
      return;
    }
    const card = actionCard(action, language, true);
    if (why) {
      const reason = document.createElement("p");
      reason.className = "action-why";
      reason.lang = language;
      reason.textContent = why;
      card.append(reason);
    }
    outcomeButtons(card, action);
    holder.append(card);
  }

  function renderMoreActions(actions, language) {
    const list = $("more-actions");
    list.textContent = "";
    $("more-heading").hidden = actions.length === 0;
    for (const action of actions) {
      const card = actionCard(action, language, false);
      outcomeButtons(card, action);
      list.append(card);
    }
  }

  function renderContinuity(items, language) {
    const list = $("continuity-items");
    list.textContent = "";
    const panel = list.closest(".panel");
    panel.classList.toggle("has-items", items.length > 0);
    $("continuity-hint").hidden = items.length === 0;
    if (!items.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = text("continuity_none");
      list.append(none);
      return;
    }
    for (const item of items) {
      const li = document.createElement("li");
      li.lang = language;
      li.textContent = item;
      list.append(li);
    }
  }

  function sensitiveLabel(name) {
    const labels = (state.config.sensitive || {})[name];
    if (!labels) return null;
    return labels[state.language] || labels[FALLBACK_LANGUAGE] || name;
  }

  function renderPrivacy() {
    const names = Object.keys(state.config.sensitive || {});
    const labels = names.map(sensitiveLabel).join(text("list_separator"));
    $("privacy-text").textContent = text("privacy_text", { labels });
  }

  function renderReasons(features, language) {
    const list = $("reasons");
    list.textContent = "";
    for (const feature of features) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "reason-label";
      label.lang = language;
      label.textContent = feature.label || feature.feature || "";
      const value = document.createElement("span");
      // The sensitive-field rule: a sensitive feature may be named as a reason, its value stays off the counter.
      if (sensitiveLabel(feature.feature) !== null) {
        value.className = "reason-value hidden-value";
        value.textContent = text("hidden_value");
      } else {
        value.className = "reason-value";
        value.textContent = feature.value ?? "";
      }
      const direction = document.createElement("span");
      direction.className = "reason-direction";
      direction.textContent = (feature.contribution || 0) >= 0 ? text("raises") : text("lowers");
      li.append(label, text("colon"), value, " · ", direction);
      list.append(li);
    }
  }

  // -- outcomes ----------------------------------------------------------------------------------------

  function recordedText(recorded) {
    const outcome = text(`outcome_${recorded.outcome}`);
    return recorded.duplicate ? text("recorded_again", { outcome }) : text("recorded", { outcome });
  }

  async function record(action, outcome, group, result) {
    const decision = state.decision;
    const buttons = Array.from(group.querySelectorAll("button"));
    for (const b of buttons) b.disabled = true;
    result.className = "outcome-result";
    result.textContent = text("recording");
    const reply = await postJson("/v1/outcomes", {
      decisionId: decision.decisionId,
      actionId: action.actionId,
      outcome,
    });
    if (reply.status === 200) {
      const recorded = { outcome, outcomeId: reply.body.outcomeId || "", duplicate: Boolean(reply.body.duplicate) };
      decision.recorded = { ...(decision.recorded || {}), [action.actionId]: recorded };
      for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.outcome === outcome));
      result.textContent = recordedText(recorded);
      result.dataset.outcomeId = recorded.outcomeId;
      say(`${action.title || action.actionId}: ${recordedText(recorded)}`, "success");
      return;
    }
    for (const b of buttons) b.disabled = false;
    const error = reply.body.error || {};
    result.className = "outcome-result error";
    result.textContent =
      reply.status === 0 || reply.status === 503
        ? text("record_unavailable")
        : text("record_failed", { message: error.message || `HTTP ${reply.status}` });
    say(result.textContent, "error");
  }

  // -- start ---------------------------------------------------------------------------------------------

  async function loadJson(path) {
    const response = await fetch(path);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  async function start() {
    try {
      [state.config, state.strings] = await Promise.all([
        loadJson("/teller/config.json"),
        loadJson("/teller/static/strings.json"),
      ]);
    } catch (_) {
      say("The teller screen could not load its settings: reload the page.", "error");
      return;
    }
    setLanguage(FALLBACK_LANGUAGE);
    $("lookup").addEventListener("submit", (event) => {
      event.preventDefault();
      lookUp($("customer-id").value.trim(), null); // a new customer: the language follows them
    });
    for (const radio of document.querySelectorAll('input[name="language"]')) {
      radio.addEventListener("change", () => {
        if (!radio.checked) return;
        // Ask again in the teller's choice; focus stays on the switch so the arrow keys keep working.
        if (state.customerId) lookUp(state.customerId, radio.value, { moveFocus: false });
        else setLanguage(radio.value);
      });
    }
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      $("customer-id").focus();
      $("customer-id").select();
    });
    document.body.dataset.ready = "true";
    $("customer-id").focus();
  }

  start();
})();
