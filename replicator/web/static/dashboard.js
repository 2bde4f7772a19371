// replicator dashboard: polls /api/status every second and draws it. No library: the page must
// work offline and under a Content-Security-Policy of 'self' only. Data is written with
// textContent, never as HTML, since table names come from the operator's config.
"use strict";

(() => {
  const POLL_MS = 1000;
  const REQUEST_TIMEOUT_MS = 3000;
  const STALE_HEARTBEAT_SECONDS = 10;
  const SERIES = [
    { field: "p50", colour: "--p50", width: 1.5 },
    { field: "p99", colour: "--p99", width: 1.5 },
    { field: "heartbeat_lag", colour: "--heartbeat", width: 2 },
  ];
  const CONFLICT_SERIES = [{ field: "conflicts", colour: "--bad", width: 2 }];
  const cards = new Map(); // "source -> region/table" -> {root, figures, canvas}
  const numbers = new Intl.NumberFormat("en-US");

  const $ = (selector, root = document) => root.querySelector(selector);
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const pairKey = (pair) => `${pair.source_table} -> ${pair.target}`;
  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

  function seconds(value) {
    if (!isNumber(value)) return "–";
    if (value === 0) return "0 ms";
    if (value < 0.01) return `${(value * 1000).toFixed(1)} ms`;
    if (value < 1) return `${(value * 1000).toFixed(0)} ms`;
    if (value < 120) return `${value.toFixed(2)} s`;
    return `${(value / 60).toFixed(1)} min`;
  }

  function duration(value) {
    if (!isNumber(value)) return "–";
    const s = Math.floor(value);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }

  function cardFor(key, index) {
    let card = cards.get(key);
    if (!card) {
      const root = $("#pair-template").content.firstElementChild.cloneNode(true);
      root.dataset.pair = key;
      $(".pair-name", root).textContent = key;
      const canvas = $("canvas", root);
      canvas.dataset.pair = key;
      card = { root, canvas, label: $('[data-label="lag"]', root), heartbeat: $("[data-heartbeat]", root) };
      card.figure = (name) => $(`[data-figure="${name}"]`, root);
      cards.set(key, card);
    }
    // The first pair's chart and lag figure also get ids, the handiest hook for a quick look.
    card.canvas.id = index === 0 ? "lag-chart" : `lag-chart-${index}`;
    card.figure("lag").id = index === 0 ? "lag" : `lag-${index}`;
    return card;
  }

  function renderPair(card, pair, samples) {
    const heartbeat = pair.heartbeat || {};
    const lag = pair.lag_seconds || {};
    // The heartbeat is the precise figure and never reads 0 when stalled; fall back to records.
    const fromHeartbeat = isNumber(heartbeat.lag_seconds);
    setText(card.figure("lag"), seconds(fromHeartbeat ? heartbeat.lag_seconds : lag.last));
    setText(card.label, fromHeartbeat ? "lag (heartbeat)" : "lag (last record)");
    setText(card.figure("quantiles"), `${seconds(lag.p50)} / ${seconds(lag.p99)}`);
    setText(card.figure("heartbeat-age"), seconds(heartbeat.age_seconds));
    const stale = isNumber(heartbeat.age_seconds) && heartbeat.age_seconds > STALE_HEARTBEAT_SECONDS;
    card.heartbeat.classList.toggle("stale", stale);
    card.heartbeat.dataset.stale = String(stale);
    const rate = isNumber(pair.throughput_per_second) ? pair.throughput_per_second : 0;
    setText(card.figure("throughput"), `${rate.toFixed(1)} /s`);
    setText(card.figure("in-flight"), numbers.format(pair.in_flight || 0));
    setText(card.figure("concurrency-limit"), numbers.format(pair.concurrency_limit || 0));
    for (const outcome of ["applied", "superseded", "duplicate", "dead_lettered"]) {
      setText(card.figure(outcome), numbers.format(pair[outcome] || 0));
    }
    $(".dlq", card.root).classList.toggle("nonzero", (pair.dead_lettered || 0) > 0);
    drawChart(card.canvas, samples, SERIES, seconds, 0.001);
  }

  function niceCeiling(value) {
    // 1, 2 or 5 times a power of ten: round axis labels.
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= value);
  }

  // Lines of ``series`` (fields of each sample's values) over time, y labelled by ``format``
  // from 0 to at least ``floor``.
  function drawChart(canvas, samples, series, format, floor) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(300, canvas.clientWidth || canvas.width);
    const height = Math.max(120, canvas.clientHeight || canvas.height);
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";

    const points = samples.filter((s) => series.some(({ field }) => isNumber(s.values[field])));
    canvas.dataset.points = String(points.length);
    if (points.length === 0) {
      ctx.fillStyle = cssVar("--muted");
      ctx.textAlign = "center";
      ctx.fillText("waiting for samples …", width / 2, height / 2);
      return;
    }

    const pad = { left: 56, right: 12, top: 10, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const tMax = points[points.length - 1].t;
    const tMin = Math.min(points[0].t, tMax - 60); // at least a minute wide
    const yMax = niceCeiling(
      Math.max(floor, ...points.flatMap((s) => series.map(({ field }) => s.values[field]).filter(isNumber))) * 1.1,
    );
    const x = (t) => pad.left + ((t - tMin) / (tMax - tMin)) * plotW;
    const y = (v) => pad.top + plotH - (Math.min(v, yMax) / yMax) * plotH;

    ctx.strokeStyle = cssVar("--line");
    ctx.fillStyle = cssVar("--muted");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const value = (yMax * i) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(value)) + 0.5);
      ctx.lineTo(width - pad.right, Math.round(y(value)) + 0.5);
      ctx.stroke();
      ctx.fillText(format(value), pad.left - 6, y(value));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const span = tMax - tMin;
    for (let i = 0; i <= 4; i += 1) {
      const ago = span - (span * i) / 4;
      const label = ago < 1 ? "now" : `-${duration(ago)}`;
      ctx.fillText(label, x(tMin + (span * i) / 4), height - pad.bottom + 6);
    }

    for (const { field, colour, width: lineWidth } of series) {
      ctx.strokeStyle = cssVar(colour);
      ctx.lineWidth = lineWidth;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let drawing = false;
      for (const sample of points) {
        const value = sample.values[field];
        if (!isNumber(value)) {
          drawing = false; // a gap in the data stays a gap in the line
          continue;
        }
        if (drawing) ctx.lineTo(x(sample.t), y(value));
        else ctx.moveTo(x(sample.t), y(value));
        drawing = true;
      }
      ctx.stroke();
    }
  }

  function renderShards(shards) {
    const body = $("#shards tbody");
    const rows = shards.map((shard) => {
      const row = document.createElement("tr");
      const state = shard.ended ? "ended" : shard.reading ? "reading" : "idle";
      const cells = [shard.source_table, shard.shard_id, shard.target, shard.checkpoint || "–", state];
      cells.forEach((text, i) => {
        const cell = document.createElement("td");
        cell.textContent = String(text ?? "–");
        if (i === 3) cell.className = "checkpoint";
        row.append(cell);
      });
      return row;
    });
    body.replaceChildren(...rows);
    $("#no-shards").hidden = shards.length > 0;
  }

  function renderTotals(service, totals) {
    const uptime = isNumber(service.now) && isNumber(service.started_at) ? service.now - service.started_at : null;
    setText(
      $("#service"),
      `${service.source_region || "?"} · ${service.mode || "?"} · v${service.version || "?"} · up ${duration(uptime)}`,
    );
    const skipped = Object.values(totals.skipped || {}).reduce((a, b) => a + b, 0);
    const figures = [
      ["read", totals.records_read], ["applied", totals.applied], ["superseded", totals.superseded],
      ["duplicate", totals.duplicate], ["DLQ", totals.dead_lettered], ["skipped", skipped],
      ["retries", totals.retries], ["trimmed", totals.trimmed], ["regressions", totals.version_regressions],
      ["conflicts", totals.conflicts],
    ];
    $("#totals").replaceChildren(
      ...figures.map(([name, value]) => {
        const span = document.createElement("span");
        const bold = document.createElement("b");
        bold.textContent = numbers.format(value || 0);
        span.append(`${name} `, bold);
        return span;
      }),
    );
  }

  const wholeNumber = (value) => (Number.isInteger(value) ? numbers.format(value) : "");

  function sideText(side) {
    return `${side.origin} v${side.version}${side.tombstone ? " delete" : ""}`;
  }

  function keyText(key) {
    return Object.entries(key || {})
      .map(([name, value]) => `${name}=${Object.values(value)[0]}`)
      .join(", ");
  }

  // The feed as this process wrote it: the count over time (history) and the latest entries.
  function renderConflicts(service, total, history, entries) {
    const section = $("#conflicts");
    section.hidden = service.mode !== "active-active" && !total;
    if (section.hidden) return;
    const figure = $('[data-figure="conflicts"]', section);
    setText(figure, numbers.format(total || 0));
    figure.dataset.nonzero = String((total || 0) > 0);
    const samples = history
      .filter((entry) => isNumber(entry.t) && isNumber(entry.conflicts))
      .map((entry) => ({ t: entry.t, values: { conflicts: entry.conflicts } }));
    drawChart($('canvas[data-chart="conflicts"]', section), samples, CONFLICT_SERIES, wholeNumber, 1);
    const rows = entries.map((entry) => {
      const row = document.createElement("tr");
      const detected = isNumber(entry.detected_at) ? new Date(entry.detected_at * 1000).toISOString().slice(11, 19) : "–";
      const cells = [
        ["id", entry.id], ["table", entry.table], ["key", keyText(entry.key)],
        ["loser", sideText(entry.loser || {})], ["winner", sideText(entry.winner || {})],
        ["detected", `${detected} in ${entry.detected_in}`],
      ];
      for (const [name, text] of cells) {
        const cell = document.createElement("td");
        cell.className = name;
        cell.textContent = String(text ?? "–");
        row.append(cell);
      }
      return row;
    });
    $("#conflict-entries tbody").replaceChildren(...rows);
    $("#no-conflicts").hidden = entries.length > 0;
  }

  // Which process replicates each table (DESIGN §6): a standby shows who holds its lease.
  function renderLeases(service, leases) {
    const role = service.role || "starting";
    const badge = $("#role");
    badge.dataset.state = role;
    setText(badge, role);
    setText(
      $("#leases"),
      leases
        .map((lease) => `${lease.source_table}: ${lease.role} (${lease.state}), lease held by ${lease.holder || "nobody"}`)
        .join(" · ") + (service.instance ? ` · this instance ${service.instance}` : ""),
    );
  }

  function render(status) {
    const pairs = status.pairs || [];
    const history = status.history || [];
    renderTotals(status.service || {}, status.totals || {});
    renderLeases(status.service || {}, status.leases || []);
    const container = $("#pairs");
    const seen = new Set();
    pairs.forEach((pair, index) => {
      const key = pairKey(pair);
      seen.add(key);
      const card = cardFor(key, index);
      if (container.children[index + 1] !== card.root) container.insertBefore(card.root, container.children[index + 1] || null);
      const samples = history
        .filter((entry) => entry.pairs && entry.pairs[key] && isNumber(entry.t))
        .map((entry) => ({ t: entry.t, values: entry.pairs[key] }));
      renderPair(card, pair, samples);
    });
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        card.root.remove();
        cards.delete(key);
      }
    }
    $("#no-pairs").hidden = pairs.length > 0;
    renderConflicts(status.service || {}, (status.totals || {}).conflicts, history, status.conflicts || []);
    renderShards(status.shards || []);
  }

  function setConnection(state, text) {
    const badge = $("#connection");
    badge.dataset.state = state;
    setText(badge, text);
  }

  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch("/api/status", { cache: "no-store", signal: abort.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      setConnection("live", "live");
    } catch (error) {
      setConnection("down", `disconnected (${error.name === "AbortError" ? "timeout" : error.message})`);
    } finally {
      clearTimeout(timer);
      // Chained, not setInterval: a slow answer never piles up overlapping requests.
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
