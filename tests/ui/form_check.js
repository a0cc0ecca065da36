// Headless check of the beteiligte_sync trigger form (issue 6): an empty "EspoCRM entity ids"
// must be accepted. Usage: node form_check.js BASE_URL PASSWORD SCREENSHOT_DIR
const { chromium } = require('playwright-core');
(async () => {
  const [base, password, out] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    await page.goto(base + '/auth/login');
    await page.fill('input[name=username]', 'admin');
    await page.fill('input[name=password]', password);
    await page.keyboard.press('Enter');
    await page.waitForURL(url => !url.pathname.startsWith('/auth/'), { timeout: 30000 });
    await page.goto(base + '/dags/beteiligte_sync');
    await page.getByRole('button', { name: 'Trigger' }).first().click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('EspoCRM entity ids').waitFor({ timeout: 30000 });
    await page.screenshot({ path: out + '/trigger_form.png' });
    const submit = dialog.getByRole('button', { name: 'Trigger' }).last();
    if (await submit.isDisabled()) throw new Error('Trigger button disabled with empty entity ids');
    await submit.click();
    await page.waitForTimeout(3000);
    await page.screenshot({ path: out + '/after_trigger.png' });
    console.log('TRIGGERED');
  } finally {
    await browser.close();
  }
})().catch(err => { console.error(err.message); process.exit(1); });
