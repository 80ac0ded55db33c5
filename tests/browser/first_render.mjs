// first_render.mjs URL NAME PASSWORD [N] — times the page in Debian's chromium: log in once,
// then N (default 5) reloads, each from navigation start to the first contentful paint, to
// each section filled (app.js marks 'filled:ID'), to every section filled (the mark 'ready')
// and to the first frame painted after it ('painted': layout and paint of what was drawn).
// Prints each reload and the median and largest. Used for README's funnel-web speed figures.
import { loggedIn } from './session.mjs';

const [url, name, password, n = '5'] = process.argv.slice(2);
const { ctx, page, loginMs } = await loggedIn(url, name, password);
console.log(`login to rendered: ${loginMs} ms`);
const runs = [];
for (let i = 0; i < Number(n); i++) {
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  runs.push(await page.evaluate(() => {
    const at = (e) => (e ? Math.round(e.startTime) : null);
    const r = { fcp: at(performance.getEntriesByName('first-contentful-paint')[0]) };
    for (const m of performance.getEntriesByType('mark'))
      if (m.name.startsWith('filled:')) r[m.name.slice(7)] = at(m);
    r.ready = at(performance.getEntriesByName('ready')[0]);
    r.painted = at(performance.getEntriesByName('painted')[0]);
    return r;
  }));
  console.log(`reload ${i + 1}: ` + Object.entries(runs[i]).map(([k, v]) => `${k} ${v}`).join(', ') + ' ms');
}
const stat = (k) => {
  const v = runs.map((r) => r[k]).sort((a, b) => a - b);
  return `${k} median ${v[(v.length - 1) >> 1]} ms, max ${v[v.length - 1]} ms`;
};
console.log(Object.keys(runs[0]).map(stat).join('; '));
await ctx.close();
