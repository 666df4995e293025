// The dashboard in a headless browser (Debian's chromium through
// playwright-core from .ci/node): sign in with a reviewer token, load every
// page, read a finished run's timeline, open the open gate, approve it from
// its page, see its run complete, upload images by drag and drop, make a
// collection and export it. A full-page screenshot of every page goes to
// $CONCIERTO_ARTIFACTS (default target/artifacts/dashboard/).
//
//   node tests/browser/dashboard.mjs URL TOKEN DONE_RUN GATED_RUN
//
// Exit status 0 when everything was seen; 1 with the reason otherwise.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, '.ci/node/package.json'));
const { chromium } = require('playwright-core');

const [url, token, doneRun, gatedRun] = process.argv.slice(2);
if (!url || !token || !doneRun || !gatedRun) {
  console.error('usage: node tests/browser/dashboard.mjs URL TOKEN DONE_RUN GATED_RUN');
  process.exit(2);
}
const artifacts = process.env.CONCIERTO_ARTIFACTS || path.join(root, 'target/artifacts/dashboard');
mkdirSync(artifacts, { recursive: true });

// Two small PNGs (4×4, red and blue) for the upload.
const RED = 'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGO4o6EBRwzEcQDzAxLBI9OCRQAAAABJRU5ErkJggg==';
const BLUE = 'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGPQsLkDRwzEcQD9AxQBMYRTzAAAAABJRU5ErkJggg==';

function check(cond, what) {
  if (!cond) throw new Error(what);
  console.log('ok -', what);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
let failed = false;
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const shot = async name => {
  await page.screenshot({ path: path.join(artifacts, name + '.png'), fullPage: true });
};
try {
  // Sign in: any page sends the browser to the login page first.
  await page.goto(url + '/runs');
  check(new URL(page.url()).pathname === '/login', 'an unsigned visit lands on the login page');
  await shot('login');
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(u => new URL(u).pathname === '/runs'), page.click('#sign-in')]);
  check(new URL(page.url()).pathname === '/runs', 'signed in, back on the page asked for');

  // Every page loads with its navigation and title (the tracker may not run:
  // its pages then say so with 503).
  const pages = [
    ['/', 'overview', [200]],
    ['/agents', 'agents', [200, 503]],
    ['/queue', 'queue', [200, 503]],
    ['/runs', 'runs', [200]],
    ['/gates', 'gates', [200]],
    ['/feedback', 'feedback', [200]],
    ['/library', 'library', [200]],
  ];
  for (const [p, name, ok] of pages) {
    const resp = await page.goto(url + p);
    const status = resp ? resp.status() : 0;
    check(ok.includes(status), `${p} answers ${status}`);
    check(await page.locator('header.top nav a[aria-current="page"]').count() === 1, `${p} has the navigation`);
    check((await page.locator('main h1').textContent()).length > 0, `${p} has a title`);
    if (status === 503) {
      check(/not running/.test(await page.locator('.unavailable').textContent()), `${p} says which service is not running`);
    }
    await shot(name);
  }

  // A finished run's timeline.
  await page.goto(url + '/runs');
  await page.click(`a[href="/runs/${encodeURIComponent(doneRun)}"]`);
  await page.waitForSelector('#run-state[data-state="succeeded"]');
  const bars = await page.locator('svg.timeline g.row rect').count();
  check(bars >= 1, `the finished run ${doneRun} has a timeline (${bars} bars)`);
  check(await page.locator('table.steps tbody tr').count() >= 1, 'its steps are listed');
  await shot('run-finished');

  // The open gate: its countdown ticks, its draft shows; approve it.
  await page.goto(url + '/gates');
  const card = page.locator('article.gate', { hasText: gatedRun }).first();
  await card.waitFor();
  await page.waitForFunction(() => /left|overdue/.test(document.querySelector('.countdown')?.textContent || ''));
  check(true, 'the SLA countdown ticks');
  await shot('gates');
  await Promise.all([page.waitForURL(/\/gates\/[^/]+$/), card.locator('a.gate-link').click()]);
  check((await page.locator('#draft').textContent()).trim().length > 0, 'the gate page shows the draft');
  await shot('gate');
  await page.fill('textarea[name="notes"]', 'Approved from the browser test.');
  await Promise.all([page.waitForURL(/decided=approve/), page.click('#approve')]);
  await page.waitForSelector('#gate-state[data-state="approved"]');
  check(true, 'the gate is approved from its page');
  await shot('gate-approved');

  // Its run completes: seen live on the open page, or on a reload.
  await page.click('#gate-run');
  const live = await page
    .waitForSelector('#run-state[data-state="succeeded"]', { timeout: 15000 })
    .then(() => true, () => false);
  if (!live) {
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      await page.reload();
      if (await page.locator('#run-state[data-state="succeeded"]').count()) break;
      await page.waitForTimeout(500);
    }
  }
  check(await page.locator('#run-state[data-state="succeeded"]').count() === 1, `the gated run ${gatedRun} completes${live ? ' (live update)' : ' (after reload)'}`);
  check(await page.locator('svg.timeline g.row.gate').count() >= 1, 'its timeline shows the gate wait');
  await shot('run-after-gate');

  // The content library: drop two images at once, make a collection, add one, export.
  await page.goto(url + '/library');
  const transfer = await page.evaluateHandle(([red, blue]) => {
    const dt = new DataTransfer();
    for (const [name, b64] of [['red.png', red], ['blue.png', blue]]) {
      const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
      dt.items.add(new File([bytes], name, { type: 'image/png' }));
    }
    return dt;
  }, [RED, BLUE]);
  await Promise.all([
    page.waitForEvent('load'),
    page.dispatchEvent('#dropzone', 'drop', { dataTransfer: transfer }),
  ]);
  await page.waitForSelector('#gallery figure.item');
  check(await page.locator('#gallery figure.item').count() === 2, 'two dropped images are in the gallery');
  check(await page.locator('#gallery .swatch').count() >= 2, 'with their palette swatches');
  await page.fill('#new-collection input[name="name"]', 'moodboard');
  await Promise.all([page.waitForEvent('load'), page.click('#new-collection button')]);
  await page.waitForSelector('li[data-collection="moodboard"]');
  await Promise.all([
    page.waitForEvent('load'),
    page.locator('select.add-to').first().selectOption('moodboard'),
  ]);
  await page.waitForSelector('.in-collection');
  check(await page.locator('.in-collection').count() === 1, 'an image was added to the collection');
  const board = await page.request.get(url + '/library/api/collections/moodboard/export.html');
  check(board.status() === 200 && (await board.text()).includes('<html'), 'the collection exports as a mood board');
  await page.goto(url + '/library?collection=moodboard');
  await shot('library-collection');
} catch (e) {
  failed = true;
  console.error('FAILED:', e.message);
  await shot('failure').catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
