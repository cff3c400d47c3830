// Small time-series charts with uPlot (vendored: vendor/README.txt), in the theme's colours.

const HEIGHT = 150;

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

function translucent(color, alpha) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (!m) return color;
  const [r, g, b] = m.slice(1).map((x) => parseInt(x, 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** A chart in `box` of series [{label, color: '--green', fill: true}] over time (seconds).
 * Returns {update(data), destroy()}; data is [xs, ...ys] as uPlot takes it. Rebuilt when
 * the system switches between light and dark. */
export function timeChart(box, series) {
  let plot = null;
  let data = [[], ...series.map(() => [])];
  const build = () => {
    plot?.destroy();
    const muted = cssColor('--muted');
    const grid = {stroke: cssColor('--chart-grid'), width: 1};
    plot = new globalThis.uPlot({
      width: Math.max(box.clientWidth, 200), height: HEIGHT,
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true}},
      axes: [
        {stroke: muted, grid, ticks: {show: false}},
        {stroke: muted, grid, ticks: {show: false}, size: 44},
      ],
      series: [{}, ...series.map((s) => {
        const color = cssColor(s.color);
        return {label: s.label, stroke: color, width: 1.6, points: {show: false},
          fill: s.fill ? translucent(color, 0.14) : undefined};
      })],
    }, data, box);
  };
  build();
  const resize = new ResizeObserver(() => {
    plot.setSize({width: Math.max(box.clientWidth, 200), height: HEIGHT});
  });
  resize.observe(box);
  const scheme = matchMedia('(prefers-color-scheme: dark)');
  scheme.addEventListener('change', build);
  return {
    update(next) {
      data = next;
      plot.setData(next);
    },
    destroy() {
      resize.disconnect();
      scheme.removeEventListener('change', build);
      plot.destroy();
    },
  };
}
