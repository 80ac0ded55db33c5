// first_render.mjs URL NAME PASSWORD [N] — times the page in Debian's chromium: log in once,
// then N (default 5) reloads, each from navigation start to the first contentful paint, to
// each section filled (app.js marks 'filled:ID'), to every section filled (the mark 'ready')
// and to the first frame painted after it ('painted': layout and paint of what was drawn).
// Prints the load after the login (its requests: when sent, queued, the server's time) and
// each reload, and the median and largest. Used for README's funnel-web speed figures.
import { loggedIn, requests } from './session.mjs';

const [url, name, password, n = '5'] = process.argv.slice(2);
const { ctx, page, loginMs } = await loggedIn(url, name, password);
console.log(`login to rendered: ${loginMs} ms`);
console.log('  after the login: ' + Object.entries(await page.evaluate(() => {
  const login = performance.getEntriesByType('resource').find((e) => e.name.endsWith('/api/v1/login'));
  const at = (name) => Math.round(performance.getEntriesByName(name)[0].startTime - login.startTime);
  return { 'login answered': Math.round(login.duration), ready: at('ready'), painted: at('painted') };
})).map(([k, v]) => `${k} ${v}`).join(', ') + ' ms (from the login request)');
const show = (r) => `  ${r.path}: sent at ${r.at}, queued ${r.queued}, server ${r.server}, total ${r.total} ms`;
console.log((await requests(page)).map(show).join('\n'));
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
  if (i === 0) console.log((await requests(page)).map(show).join('\n'));
}
const stat = (k) => {
  const v = runs.map((r) => r[k]).sort((a, b) => a - b);
  return `${k} median ${v[(v.length - 1) >> 1]} ms, max ${v[v.length - 1]} ms`;
};
console.log(Object.keys(runs[0]).map(stat).join('; '));
await ctx.close();
