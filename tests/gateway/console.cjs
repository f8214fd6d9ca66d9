// The clinician console in a real browser: Debian's Chromium, headless,
// driven by playwright-core (tests/npm). Run by gateway_e2e_test
// (ConsoleInARealBrowser), which starts the stack and takes the screening
// when this script says it is ready. Environment:
//   GATEWAY_URL        http://127.0.0.1:<port>
//   TOKEN_DR_NJ        a physician licensed in NJ
//   TOKEN_CL_CA        a clinician licensed in CA only
//   HANDSHAKE_DIR      this writes "ready", then waits for "screened"
//   SCREENSHOT_DIR     where the README's screenshots are written
//   CHROMIUM           the browser (default /usr/bin/chromium)
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const url = process.env.GATEWAY_URL;
const shots = process.env.SCREENSHOT_DIR;
const handshake = process.env.HANDSHAKE_DIR;

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function signIn(page, token, lease) {
  await page.goto(`${url}/console/`);
  await page.getByLabel('Access token').fill(token);
  await page.getByLabel('Claim lease, seconds').fill(String(lease));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#live.on').waitFor({ timeout: 10000 });
}

async function waitForFile(file, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fs.existsSync(file)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${file} after ${ms} ms`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let nj;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    nj = await context.newPage();
    const ca = await (await browser.newContext()).newPage();
    await signIn(nj, process.env.TOKEN_DR_NJ, 5);
    await signIn(ca, process.env.TOKEN_CL_CA, 600);
    check(await nj.locator('#who').innerText().then((t) => t.includes('physician')), 'signed in as the NJ physician');

    // A crisis screening taken through intake (by the test) appears at
    // once in the open console: live, no reload.
    fs.writeFileSync(path.join(handshake, 'ready'), 'ready\n');
    await waitForFile(path.join(handshake, 'screened'), 120000);
    const urgent = nj.locator('.case-row.urgent', { hasText: 'NJ' });
    await urgent.first().waitFor({ timeout: 2000 });
    check(true, 'the crisis case appeared in the open console within 2 s');
    check(await nj.locator('.case-row').first().evaluate((e) => e.classList.contains('urgent')),
      'urgent cases are on top');
    check(nj.url() === `${url}/console/`, 'nothing about the person in the URL');
    if (shots) await nj.screenshot({ path: path.join(shots, 'console-queue.png') });

    // A clinician licensed elsewhere sees nothing of it, live or on reload.
    await ca.waitForTimeout(1000);
    check(await ca.locator('.case-row').count() === 0, 'a clinician licensed in CA does not see the NJ case');
    await ca.reload();
    await ca.locator('#live.on').waitFor({ timeout: 10000 });
    check(await ca.locator('#queue-empty').isVisible(), 'nor after a reload');

    // The case page: scores, the rules that fired, flags, risk answers.
    await urgent.first().click();
    await nj.locator('#case-title', { hasText: 'Urgent' }).waitFor();
    const text = await nj.locator('#case').innerText();
    check(text.includes('PHQ9_ITEM9_POSITIVE'), 'the safety flag is shown');
    check(text.includes('flag.phq9_item9'), 'the rule that fired is shown');
    await nj.locator('#rules', { hasText: 'PHQ-9 item 9 above 0' }).waitFor({ timeout: 5000 });
    check(true, 'in plain words (the ruleset\'s own description)');
    check(text.includes('Several days'), 'the risk answer is shown');
    check(text.includes('phq9'), 'the scores are shown');
    await nj.locator('#audit li').first().waitFor();

    // Claim with a (short) lease and see it expire.
    await nj.getByRole('button', { name: 'Claim' }).click();
    await nj.locator('#lease-box', { hasText: 'lease ends in' }).waitFor({ timeout: 5000 });
    check(true, 'claimed, with the lease counting down');
    await nj.locator('#lease-box', { hasText: 'Lease expired' }).waitFor({ timeout: 15000 });
    await nj.getByRole('button', { name: 'Claim' }).waitFor({ timeout: 5000 });
    check(true, 'the lease expired and the case can be claimed again');

    // Sign in again with a working lease; claim and decide.
    await nj.getByRole('button', { name: 'Sign out' }).click();
    await signIn(nj, process.env.TOKEN_DR_NJ, 600);
    await urgent.first().click();
    await nj.locator('#case-title', { hasText: 'Urgent' }).waitFor();
    await nj.getByRole('button', { name: 'Claim' }).click();
    await nj.locator('#decide-form').waitFor();
    if (shots) await nj.screenshot({ path: path.join(shots, 'console-case.png'), fullPage: true });
    await nj.getByRole('button', { name: 'Record decision' }).click();
    await nj.locator('#decide-error', { hasText: 'reason is required' }).waitFor();
    check(true, 'a decision without a reason is refused');
    await nj.getByLabel('Confirm the route').check();
    await nj.getByLabel('Reason (required)').fill('Called; safety plan agreed; follow-up tomorrow');
    await nj.getByRole('button', { name: 'Record decision' }).click();
    await nj.locator('#case-facts', { hasText: 'Decided' }).waitFor({ timeout: 5000 });
    await nj.locator('#audit li', { hasText: 'by dr-nj' }).first().waitFor({ timeout: 5000 });
    const audit = await nj.locator('#audit').innerText();
    check(/decide/i.test(audit) && audit.includes('dr-nj'), 'the audit trail shows the decision and who made it');
    await nj.locator('.case-row.urgent', { hasText: 'NJ' }).waitFor({ state: 'detached', timeout: 5000 });
    check(true, 'the decided case left the queue');
    console.log('console test passed');
  } catch (e) {
    console.error(e.stack || String(e));
    if (nj && shots) await nj.screenshot({ path: path.join(shots, 'console-failure.png'), fullPage: true }).catch(() => {});
    await browser.close();
    process.exit(1);
  }
  await browser.close();
})();
