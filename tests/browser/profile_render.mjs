// profile_render.mjs URL NAME PASSWORD [N] — where the page's first render goes, from chromium's
// own counters (DevTools Performance.getMetrics): per load in a new tab until body[data-ready],
// the time the renderer spent in script, style recalculation, layout and in tasks in all, and
// the DOM nodes made. Used for README's funnel-web speed figures (the page before and after).
import { loggedIn } from './session.mjs';

const [url, name, password, n = '3'] = process.argv.slice(2);
const { ctx } = await loggedIn(url, name, password);
const keys = { ScriptDuration: 'script', RecalcStyleDuration: 'style', LayoutDuration: 'layout',
  TaskDuration: 'tasks' };
// A new tab per run, so the counters are that page's alone.
for (let i = 0; i < Number(n); i++) {
  const tab = await ctx.newPage();
  const cdp = await ctx.newCDPSession(tab);
  await cdp.send('Performance.enable');
  await tab.goto(url);
  await tab.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  const m = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics
    .map((x) => [x.name, x.value]));
  const rows = await tab.evaluate(() => ['sla-table', 'comp-table', 'attr-table']
    .map((id) => `${id} ${document.getElementById(id).tBodies[0].rows.length}`).join(', '));
  console.log(`run ${i + 1}: ` + Object.entries(keys).map(([k, s]) =>
    `${s} ${Math.round(m[k] * 1000)} ms`).join(', ') + `, DOM nodes ${m.Nodes}; rows: ${rows}`);
  await tab.close();
}
await ctx.close();
