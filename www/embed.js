// <blindspot-demo model digit target attack>: the lab in ?embed=1 mode, framed in someone's page.
//
// One script tag loads it; the frame's address is relative to this file, so it works wherever
// blindspot is hosted:
//   <script type="module" src="https://example.org/blindspot/www/embed.js"></script>
//   <blindspot-demo model="cnn" digit="0" target="3" attack="lbfgs" autorun></blindspot-demo>

const SITE = new URL('../index.html', import.meta.url);
const ATTRIBUTES = ['model', 'digit', 'image', 'target', 'attack', 'iterations', 'c-steps', 'epsilon', 'steps', 'heatmap', 'autorun'];

class BlindspotDemo extends HTMLElement {
  static observedAttributes = [...ATTRIBUTES, 'height', 'title'];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>
      :host { display: block; max-width: 100%; }
      iframe { display: block; width: 100%; border: 1px solid #d9dee7; border-radius: 10px; background: #fbfbfd; }
    </style><iframe loading="lazy" allow="clipboard-read"></iframe>`;
    this.frame = root.querySelector('iframe');
    this.onMessage = (e) => {
      if (e.source !== this.frame.contentWindow || e.data?.blindspot !== 'resize') return;
      if (!this.hasAttribute('height')) this.frame.style.height = `${Math.min(4000, Math.max(200, e.data.height + 2))}px`;
    };
  }

  /** The lab's URL for the attributes: model, digit, target ("any" or a class), attack, settings. */
  get src() {
    const url = new URL(SITE);
    url.searchParams.set('embed', '1');
    for (const name of ATTRIBUTES) {
      const value = this.getAttribute(name);
      if (value === null) continue;
      if (name === 'autorun') url.searchParams.set('run', '1');
      else if (name === 'heatmap') url.searchParams.set('heatmap', '1');
      else url.searchParams.set(name, value);
    }
    return url.href;
  }

  connectedCallback() {
    window.addEventListener('message', this.onMessage);
    this.update();
  }

  disconnectedCallback() {
    window.removeEventListener('message', this.onMessage);
  }

  attributeChangedCallback() {
    if (this.isConnected) this.update();
  }

  update() {
    const height = this.getAttribute('height');
    this.frame.style.height = height ? `${parseInt(height, 10)}px` : (this.frame.style.height || '640px');
    const model = this.getAttribute('model') ?? 'the default model';
    this.frame.title = this.getAttribute('title') ?? `blindspot: an adversarial example for ${model}, live`;
    if (this.frame.src !== this.src) this.frame.src = this.src;
  }
}

if (!customElements.get('blindspot-demo')) customElements.define('blindspot-demo', BlindspotDemo);
