/*
 * A small time-series chart on <canvas> for the pushservice console: lines or stacked
 * areas over a time axis, with a zero-based y axis, grid lines and tick labels. No
 * dependencies; about what the console needs and nothing more.
 *
 *   ConsoleChart.draw(canvas, {
 *     series: [{ name, color, points: [[timeMs, value], ...] }],
 *     stacked: false,      // true: areas stacked in series order
 *     yFormat: (v) => ..., // tick labels (default: compact numbers)
 *     empty: 'text shown when there are no points',
 *   });
 */
(function () {
  'use strict';

  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
    if (a > 0 && a < 10 && v % 1 !== 0) return v.toFixed(1);
    return String(Math.round(v));
  }

  /** A "nice" step for about `count` ticks over [0, max]. */
  function niceStep(max, count) {
    const raw = max / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const residual = raw / magnitude;
    const nice = residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1;
    return nice * magnitude;
  }

  function clock(t) {
    const d = new Date(t);
    const pad = (n) => String(n).padStart(2, '0');
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function draw(canvas, options) {
    const dpr = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || canvas.width;
    const cssHeight = Math.round(cssWidth * (canvas.height / canvas.width)) || canvas.height;
    if (canvas.dataset.w !== String(cssWidth * dpr)) {
      // Keep the declared aspect ratio; draw at device resolution.
      canvas.dataset.ratio = canvas.dataset.ratio || String(canvas.height / canvas.width);
      const ratio = Number(canvas.dataset.ratio);
      canvas.width = Math.round(cssWidth * dpr);
      canvas.height = Math.round(cssWidth * ratio * dpr);
      canvas.dataset.w = String(canvas.width);
    }
    const ctx = canvas.getContext('2d');
    const W = canvas.width / dpr;
    const H = canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const styles = getComputedStyle(document.documentElement);
    const muted = styles.getPropertyValue('--muted').trim() || '#8d97a5';
    const line = styles.getPropertyValue('--line').trim() || '#2a313b';
    ctx.font = '11px system-ui, "DejaVu Sans", sans-serif';

    const series = options.series || [];
    const all = series.flatMap((s) => s.points);
    if (all.length < 2) {
      ctx.fillStyle = muted;
      ctx.textAlign = 'center';
      ctx.fillText(options.empty || 'waiting for data…', W / 2, H / 2);
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]));
    // Stacked: each series drawn on top of the sum of those before it, at the same times.
    let layers = series.map((s) => s.points.map((p) => [p[0], p[1], 0]));
    if (options.stacked) {
      for (let i = 1; i < layers.length; i++) {
        layers[i] = layers[i].map((p, j) => {
          const below = layers[i - 1][j] ? layers[i - 1][j][1] : 0;
          return [p[0], p[1] + below, below];
        });
      }
    }
    const maxValue = Math.max(1e-9, ...layers.flat().map((p) => p[1]));
    const step = niceStep(maxValue, 4);
    const yMax = Math.max(step, Math.ceil(maxValue / step) * step);
    const yFormat = options.yFormat || compact;
    const left = 8 + Math.max(...[0, yMax / 2, yMax].map((v) => ctx.measureText(yFormat(v)).width));
    const pad = { l: left + 6, r: 8, t: 8, b: 18 };
    const x = (t) => pad.l + (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r));
    const y = (v) => H - pad.b - (v / yMax) * (H - pad.t - pad.b);

    // Grid and y ticks.
    ctx.strokeStyle = line;
    ctx.lineWidth = 1;
    ctx.fillStyle = muted;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= yMax + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(W - pad.r, yy);
      ctx.stroke();
      ctx.fillText(yFormat(v), pad.l - 6, yy);
    }
    // Time ticks: start, middle, end.
    ctx.textBaseline = 'alphabetic';
    const ticks = [[t0, 'left'], [(t0 + t1) / 2, 'center'], [t1, 'right']];
    for (const [t, align] of ticks) {
      ctx.textAlign = align;
      ctx.fillText(clock(t), x(t), H - 4);
    }

    // Areas (stacked) or lines.
    layers.forEach((points, i) => {
      if (points.length === 0) return;
      const color = series[i].color;
      ctx.beginPath();
      points.forEach((p, j) => (j === 0 ? ctx.moveTo(x(p[0]), y(p[1])) : ctx.lineTo(x(p[0]), y(p[1]))));
      if (options.stacked) {
        for (let j = points.length - 1; j >= 0; j--) ctx.lineTo(x(points[j][0]), y(points[j][2]));
        ctx.closePath();
        ctx.globalAlpha = 0.75;
        ctx.fillStyle = color;
        ctx.fill();
        ctx.globalAlpha = 1;
      } else {
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.6;
        ctx.stroke();
      }
    });
  }

  window.ConsoleChart = { draw, compact };
})();
