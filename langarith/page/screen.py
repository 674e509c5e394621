"""The page on every screen and for every student (issue 39): the phone's layout (λ, the formula
and the three predictions on the first screen, λ in a sticky bar), what keeps Gradio's own
components free of accessibility faults (contrast, hidden focusable buttons), and the slider's
value in words for a screen reader. CSS and a head script only: no event, no model."""

from __future__ import annotations

PHONE_MAX_WIDTH = 640  # px: below this the page is laid out for a phone

# On a phone Gradio stacks every column, so λ, the formula and the predictions ended up a
# screen apart. Here the containers between them and the page's main column give up their boxes
# (``display: contents``), so that each part is an item of that one column: ``order`` puts λ,
# the formula and the predictions first, and λ's bar can stick to the top over the whole page.
PHONE_CSS = f"""
@media (max-width: {PHONE_MAX_WIDTH}px) {{
  #header-row, #header-row > .column, #pickers, #pickers > .form,
  #first-screen, #first-screen > .column {{ display: contents !important; }}
  #title {{ order: -10; }}
  #lam {{ order: -9; position: sticky; top: 0; z-index: 60; padding: 4px 8px !important;
          box-shadow: 0 2px 6px rgba(0, 0, 0, 0.15); }}
  #formula {{ order: -8; }}
  #preds, #spans-row {{ order: -7; }}
  #title h1 {{ font-size: 1.05rem !important; margin: 0 !important; line-height: 1.3; }}
  #intro-line {{ display: none !important; }}
  #formula h3 {{ font-size: 0.95rem !important; margin: 0 !important; }}
  #lam .head {{ margin-bottom: 0 !important; }}
  #lam .min_value, #lam .max_value {{ display: none; }}
  /* three compact columns, side by side: each one's labels and probabilities */
  #preds {{ flex-wrap: nowrap !important; gap: 4px !important; }}
  #preds > .block {{ min-width: 0 !important; flex: 1 1 0 !important; padding: 22px 4px 4px !important; }}
  #preds .confidence-set {{ font-size: 0.75rem; padding: 0 !important; margin: 0 0 2px 0 !important; }}
  #preds .confidence-set dl.label {{ margin: 0 !important; gap: 2px; }}
  #preds .confidence-set .text {{ overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }}
  #preds .confidence-set .line {{ display: none; }}
  #preds .confidence-set .confidence {{ margin-left: auto; }}
  #preds label[data-testid="block-label"] {{ font-size: 0.7rem; white-space: nowrap; }}
  /* the tagged spans of A, the merge and B one under another, full width: words stay whole */
  #spans-row {{ flex-direction: column !important; gap: 4px !important; }}
  #spans-row > .block {{ min-width: 0 !important; width: 100% !important; }}
  /* the details below: their plots one under another */
  .row:has(> #mlm-live), .row:has(> #mlm-live-note) {{ flex-direction: column !important; }}
  /* the tabs fit one line (no unnamed overflow button) */
  .tab-wrapper button[role="tab"], .tab-container button {{ padding: 0 6px !important;
                                                          font-size: 0.8rem !important; }}
}}
/* a horizontal swipe drags λ, a vertical one scrolls the page: a scroll never moves λ */
#lam input[type="range"] {{ touch-action: pan-y; }}
"""

# What axe-core found inside Gradio's own components (NOTES.md section 5), avoided by settings
# the page owns: the footer's grey links and the selected tab's orange lacked contrast; the Tabs'
# hidden measuring copy of the tab buttons could take focus (``visibility: hidden`` keeps its
# widths, which Gradio measures, and takes it out of the tab order).
ACCESS_CSS = """
/* Gradio's container hides its overflow, which made it the scroller a sticky λ bar sticks in (it
   never scrolls); clip cuts the same overflow without being a scroller */
.gradio-container { overflow: clip !important; }
.gradio-container .main.app { /* Gradio scopes @media rules to its inner column: the page's side margins, 32 px, fall to 6 px on a phone */
  padding-left: clamp(6px, (100vw - 640px) * 1000, var(--size-8)) !important;
  padding-right: clamp(6px, (100vw - 640px) * 1000, var(--size-8)) !important; }
footer, footer button, footer a, footer .built-with, footer .settings, footer .show-api {
  color: #4b5563 !important; opacity: 1 !important; }
button[role="tab"].selected, button[role="tab"][aria-selected="true"] { color: #9a3412 !important; }
.tab-container.visually-hidden, .tab-container.visually-hidden button { visibility: hidden !important; }
#title h1 { font-size: var(--text-lg); margin: 0; }  /* the page's one h1, as small as the h3 it was */
.gradio-container input.subdued { color: #6b7280 !important; }  /* an empty dropdown's grey: 4.8:1 */
.flips-wrap { max-height: 320px; overflow: auto; }
.flips-wrap table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
.flips-wrap caption { text-align: left; font-weight: 600; padding: 4px 0; }
.flips-wrap th, .flips-wrap td { border: 1px solid var(--border-color-primary); padding: 3px 6px;
  text-align: left; vertical-align: top; word-break: normal; overflow-wrap: normal; }
.flips-wrap th { position: sticky; top: 0; background: var(--background-fill-secondary); }
.flips-wrap td.label { white-space: nowrap; }
@media (max-width: 640px) { .flips-wrap table { min-width: 560px; } .flips-wrap { max-height: 420px; } }
"""

CSS = PHONE_CSS + ACCESS_CSS

# The slider says λ in words (``aria-valuetext``), with the pair's codes read from the formula
# above the predictions: "λ 0.70: 70 % en, 30 % es". The range input changes by a drag, by the
# keyboard, or by the page (a tour step, a link), so the text follows both the input and every
# change of the page (one cheap call per batch of changes).
HEAD = """
<script>
(() => {
  const say = () => {
    const r = document.querySelector('#lam input[type=range]');
    if (!r) return;
    const lam = parseFloat(r.value);
    if (Number.isNaN(lam)) return;
    const m = (document.querySelector('#formula')?.innerText || '')
      .match(/merged = [0-9.]+·(\\S+) \\+ [0-9.]+·(\\S+)/);
    const pct = Math.round(lam * 100);
    const text = `λ ${lam.toFixed(2)}` + (m ? `: ${pct} % ${m[1]}, ${100 - pct} % ${m[2]}` : '');
    for (const el of document.querySelectorAll('#lam input')) {
      if (el.getAttribute('aria-valuetext') !== text) el.setAttribute('aria-valuetext', text);
    }
  };
  document.addEventListener('input', say, true);
  // A finger put down on the slider to scroll would set λ where it landed (a range input jumps
  // to the touch): until the finger moves sideways, the page holds the slider's input back, and
  // when the browser takes the gesture as a scroll (pointercancel) λ goes back to what it was.
  let held = null;
  const range = e => e.target instanceof HTMLInputElement && e.target.type === 'range' && e.target.closest('#lam');
  document.addEventListener('pointerdown', e => {
    if (e.pointerType === 'touch' && range(e)) held = {el: e.target, value: e.target.value, x: e.clientX, y: e.clientY};
  }, true);
  document.addEventListener('input', e => { if (held && e.target === held.el) e.stopImmediatePropagation(); }, true);
  const release = () => { const el = held.el; held = null; el.dispatchEvent(new Event('input', {bubbles: true})); };
  document.addEventListener('pointermove', e => {
    if (held && Math.abs(e.clientX - held.x) > 6 && Math.abs(e.clientX - held.x) > Math.abs(e.clientY - held.y)) release();
  }, true);
  document.addEventListener('pointerup', () => { if (held) release(); }, true);  // a tap sets λ
  document.addEventListener('pointercancel', () => { if (held) { held.el.value = held.value; held = null; say(); } }, true);
  new MutationObserver(say).observe(document.documentElement, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['style']});
})();
</script>
"""

