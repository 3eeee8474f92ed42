// Run in the console's page by test_console.py: `seconds` of `rate` decisions a second, written as the
// event stream writes them and pushed through the page's own SSE parser into the live log. Returns
// what was drawn and how the page kept time meanwhile.
async ({ seconds, rate }) => {
  const live = await import('/static/live.js');
  const { SseParser } = await import('/static/sse.js');
  const parser = new SseParser((e) => {
    if (!e.empty) live.ingest(JSON.parse(e.data));
  });
  const decision = (n) => ({
    id: n,
    call_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    number: '+61212345678',
    campaign: 'load',
    verdict: n % 3 ? 'ALLOW' : 'BLOCK',
    reason: n % 3 ? 'ok' : 'dnc.internal',
    reasons: [{ code: 'number.ok', passed: true, detail: {} }],
    next_callable_at: null,
    rules_version: 'x',
    decided_at: new Date().toISOString(),
  });
  // How late a 50 ms timer fires: the longest the page would keep a click waiting.
  const lags = [];
  let last = performance.now();
  const tick = setInterval(() => {
    const t = performance.now();
    lags.push(t - last - 50);
    last = t;
  }, 50);
  let frames = 0;
  let running = true;
  const count = () => {
    frames += 1;
    if (running) requestAnimationFrame(count);
  };
  requestAnimationFrame(count);
  const start = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const pump = setInterval(() => {
      const due = Math.min(seconds * rate, Math.floor(((performance.now() - start) / 1000) * rate));
      let text = '';
      for (; sent < due; sent += 1) {
        text += `id: ${sent}\nevent: decision\ndata: ${JSON.stringify(decision(sent))}\n\n`;
      }
      parser.push(text);
      if (sent >= seconds * rate) {
        clearInterval(pump);
        resolve();
      }
    }, 10);
  });
  const elapsed = (performance.now() - start) / 1000;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  running = false;
  clearInterval(tick);
  const rows = document.querySelectorAll('#live-rows tr');
  return {
    sent,
    elapsed,
    fps: frames / elapsed,
    maxLagMs: Math.max(...lags),
    rows: rows.length,
    top: rows[0].dataset.callId,
    cap: live.MAX_ROWS,
  };
}
