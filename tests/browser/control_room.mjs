// The dashboard as a control room, in a headless browser (Debian's chromium
// through playwright-core from .ci/node), on a studio `concierto up` has just
// started on a fresh data folder (tests/tests/control_room.rs):
//
//  1. sign in through the first-run link `up` printed;
//  2. the library shows the example's sample items with their palettes;
//  3. start a run with a brief from the runs page, and see it appear live in
//     the runs list open in a second tab;
//  4. open its step outputs;
//  5. retry the failed run FAILED_RUN from its failed step (after creating
//     MARKER, the file its failing step needs);
//  6. pause and resume a trigger;
//  7. decide the retried run's gate at a 390×844 (phone) viewport;
//  8. replay a dead letter.
//
// A full-page screenshot of each goes to $CONCIERTO_ARTIFACTS.
//
//   node tests/browser/control_room.mjs URL SIGN_IN_LINK FAILED_RUN MARKER
//
// Exit status 0 when everything was seen; 1 with the reason otherwise.
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, '.ci/node/package.json'));
const { chromium } = require('playwright-core');

const [url, link, failedRun, marker] = process.argv.slice(2);
if (!url || !link || !failedRun || !marker) {
  console.error('usage: node tests/browser/control_room.mjs URL SIGN_IN_LINK FAILED_RUN MARKER');
  process.exit(2);
}
const artifacts = process.env.CONCIERTO_ARTIFACTS || path.join(root, 'target/artifacts/control-room');
mkdirSync(artifacts, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(what);
  console.log('ok -', what);
}

// Reloads `page` until `selector` is there (for what arrives on its own time).
async function reloadUntil(page, selector, what, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await page.locator(selector).count()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await page.waitForTimeout(1000);
    await page.reload();
  }
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
let page = await context.newPage();
let failed = false;
const shot = async (name, p = page) => {
  await p.screenshot({ path: path.join(artifacts, name + '.png'), fullPage: true });
};
try {
  // 1. The first-run link signs the browser in and lands on the overview.
  await page.goto(link);
  await page.waitForURL(u => new URL(u).pathname === '/', { timeout: 15000 });
  check(!page.url().includes('token='), 'the token is gone from the address bar');
  check(await page.locator('header.top nav a[aria-current="page"]').count() === 1, 'signed in through the first-run link, on the overview');
  await shot('signed-in');

  // 2. The example's sample content, ingested in the first minute.
  await page.goto(url + '/library');
  await reloadUntil(page, '#gallery figure.item .swatch', 'sample items with palettes in the library');
  const items = await page.locator('#gallery figure.item').count();
  check(items >= 2, `the library shows the sample items (${items})`);
  check(await page.locator('#gallery .swatch').count() >= 2, 'with their palette swatches');
  await shot('library');

  // 3. Start a run with a brief; a second tab's runs list shows it live.
  const list = await context.newPage();
  await list.goto(url + '/runs');
  await list.waitForSelector('#run-list');
  // The live stream is open before the run starts.
  await list.waitForTimeout(1000);
  await page.goto(url + '/runs');
  await page.selectOption('#start-workflow', 'launch-check');
  await page.fill('#start-brief', 'Spring launch: lead with the offer, keep it under 80 words.');
  await Promise.all([page.waitForURL(/\/runs\/[^/?]+/), page.click('#start-submit')]);
  const started = decodeURIComponent(new URL(page.url()).pathname.split('/')[2]);
  check(started.length > 0, `a run started from the dashboard: ${started}`);
  await list.waitForSelector(`tr[data-run="${started}"]`, { timeout: 20000 });
  check(true, 'it appears in the other tab\'s runs list without a reload');
  await shot('runs-live', list);
  await list.close();

  // 4. Its step outputs: the draft is rendered, the brief went in as a param.
  await page.waitForSelector('[data-step-output="draft"]', { timeout: 30000 }).catch(() => {});
  await reloadUntil(page, '[data-step-output="draft"]', 'the draft step output');
  const draft = (await page.locator('[data-step-output="draft"]').first().textContent()).trim();
  check(draft.length > 0, `the draft step shows its output (${draft.length} characters)`);
  check((await page.content()).includes('Spring launch'), 'the brief is shown with the run');
  await shot('run-outputs');

  // 5. The failed run: make its step able to pass, retry from the failed step.
  writeFileSync(marker, 'checklist\n');
  await page.goto(url + '/runs/' + encodeURIComponent(failedRun));
  await page.waitForSelector('#run-state[data-state="failed"]');
  await Promise.all([page.waitForURL(u => decodeURIComponent(u.toString()).includes('~retry')), page.click('#retry-failed')]);
  const retried = decodeURIComponent(new URL(page.url()).pathname.split('/')[2]);
  check(retried === failedRun + '~retry1', `retried as ${retried}`);
  await reloadUntil(page, '[data-carried-over]', 'the carried-over draft');
  check(true, 'the draft is carried over from the failed run');
  await reloadUntil(page, '#run-state[data-state="waiting gate"]', 'the retried run to wait at its gate', 60000);
  check(true, 'the checklist passes this time and the run waits at its gate');
  await shot('retried');

  // 6. Pause and resume a trigger.
  const trigger = 'daily_content_generation';
  await page.goto(url + '/triggers');
  const row = () => page.locator(`tr[data-trigger="${trigger}"]`);
  check(await row().getAttribute('data-paused') === 'false', `${trigger} runs`);
  await Promise.all([page.waitForEvent('load'), row().locator('button[data-action="pause"]').click()]);
  await page.waitForSelector(`tr[data-trigger="${trigger}"][data-paused="true"]`);
  check(true, `${trigger} is paused`);
  await shot('triggers-paused');
  await Promise.all([page.waitForEvent('load'), row().locator('button[data-action="resume"]').click()]);
  await page.waitForSelector(`tr[data-trigger="${trigger}"][data-paused="false"]`);
  check(true, `${trigger} is resumed`);

  // 7. Decide the retried run's gate on a phone.
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(url + '/gates/' + encodeURIComponent(retried));
  await phone.waitForSelector('#gate-state[data-state="open"]');
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `the gate page fits the phone's width (${wide} px)`);
  const box = await phone.locator('#approve').boundingBox();
  check(box && box.height >= 40, `the Approve button is big enough to tap (${box && box.height} px)`);
  await phone.fill('textarea[name="notes"]', 'Approved on the phone.');
  await Promise.all([phone.waitForURL(/decided=approve/), phone.click('#approve')]);
  await phone.waitForSelector('#gate-state[data-state="approved"]');
  check(true, 'the gate is approved at 390×844');
  await shot('gate-phone', phone);
  await phone.close();

  // 8. Replay a dead letter.
  await page.goto(url + '/dead-letters');
  const letter = page.locator('tr[data-dead-letter]').first();
  await letter.waitFor();
  const seq = await letter.getAttribute('data-dead-letter');
  await Promise.all([page.waitForURL(/\/dead-letters\/\d+/), letter.locator('a.dead-letter-link').click()]);
  check((await page.locator('pre#payload').textContent()).length > 0, `dead letter ${seq} shows its payload`);
  await Promise.all([page.waitForEvent('load'), page.click('#replay')]);
  await page.waitForSelector('#replayed[data-replayed]');
  check(await page.locator(`tr[data-dead-letter="${seq}"]`).count() === 0, `dead letter ${seq} is replayed and gone from the list`);
  await shot('dead-letters-replayed');
} catch (e) {
  failed = true;
  console.error('FAILED:', e.message);
  await shot('failure').catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
