/*
 * Wayfinder widget.js: the contact form.
 *
 *   <script src="https://HOST/widget.js" data-widget="WIDGET-UUID" async></script>
 *
 * Renders where the tag is (or inside the element matched by `data-target`),
 * in a shadow root. Source of widget.min.js: run `node api/assets/build.mjs`
 * after editing. Plain modern JS, no dependencies; under 4 KB minified.
 *
 * No CAPTCHA service: the form loads a signed `contactChallenge` with
 * `widgetConfig` and sends it back with `submitContact`, together with a
 * honeypot field people never see (bots fill it in). The server rejects a
 * challenge used sooner than `contactMinFillMs` after it was issued, twice, or
 * for another widget; after any error the form fetches a fresh one.
 * Never throws into the host page.
 */
(() => {
  try {
    let d = document;
    let me = d.currentScript || d.querySelector("[data-widget]");
    let wid = me.dataset.widget;
    let http = new URL(".", me.src) + "graphql";
    let challenge;

    // `field(arg: $i)` of a one-field operation; GraphQL errors are thrown as they are.
    let gql = async (op, field, type, arg, selection, i) => {
      let j = await (
        await fetch(http, {
          method: "POST",
          body: JSON.stringify({
            query: `${op}($i:${type}!){${field}(${arg}:$i){${selection}}}`,
            variables: { i },
          }),
        })
      ).json();
      if (j.errors) throw j.errors[0];
      return j.data[field];
    };

    let host = d.createElement("div");
    host.style = "all:initial!important;display:block!important";
    let root = host.attachShadow({ mode: "open" });
    root.innerHTML =
      "<style>form{display:grid;gap:10px;max-width:420px;font:15px/1.4 system-ui,sans-serif;color:#1b1f24}" +
      "label{display:grid;gap:4px;font-weight:600}" +
      "input,textarea{font:inherit;font-weight:400;padding:8px 10px;border:1px solid #bbb;border-radius:8px}" +
      "button{font:inherit;font-weight:600;padding:9px;border:0;border-radius:8px;background:var(--p,#1f6feb);color:var(--a,#fff);cursor:pointer}" +
      "button:disabled{opacity:.6}" +
      ".hp{position:absolute;left:-9999px;width:1px;height:1px;overflow:hidden}" +
      "[role=alert]{color:#b42318}[role=status]{color:#067647}p:empty{display:none}p{margin:0}</style>" +
      "<form novalidate><h3 style=margin:0>Contact us</h3>" +
      "<label>Name<input name=name required maxlength=200 autocomplete=name></label>" +
      "<label>Email<input name=email type=email required maxlength=320 autocomplete=email></label>" +
      "<label>Message<textarea name=message required maxlength=5000 rows=5></textarea></label>" +
      // The honeypot: off screen, out of the tab order, hidden from screen readers.
      "<div class=hp aria-hidden=true><label>Leave this empty<input name=website tabindex=-1 autocomplete=off></label></div>" +
      "<button>Send</button><p role=alert></p><p role=status aria-live=polite></p></form>";
    let $ = (s) => root.querySelector(s);
    let form = $("form");
    let button = $("button");
    let alert = $("[role=alert]");
    let status = $("[role=status]");
    let field = (name) => form.elements[name].value.trim();

    // A fresh challenge (each works once); the form stays disabled until one is here.
    let refresh = async () => {
      button.disabled = true;
      try {
        let c = await gql(
          "query",
          "widgetConfig",
          "UUID",
          "widgetId",
          "contactChallenge primaryColor accentColor",
          wid,
        );
        challenge = c.contactChallenge;
        host.style.setProperty("--p", c.primaryColor);
        host.style.setProperty("--a", c.accentColor);
        button.disabled = false;
      } catch (e) {
        alert.textContent = (e && e.message) || "The contact form is unavailable.";
      }
    };

    form.onsubmit = async (e) => {
      try {
        e.preventDefault();
        alert.textContent = "";
        if (!form.checkValidity()) {
          alert.textContent = "Please fill in your name, a valid email and a message.";
          return form.reportValidity();
        }
        button.disabled = true;
        button.textContent = "Sending…";
        try {
          let r = await gql("mutation", "submitContact", "SubmitContactInput", "input", "ok message", {
            widgetId: wid,
            name: field("name"),
            email: field("email"),
            message: field("message"),
            honeypot: form.elements.website.value,
            challenge,
          });
          form.replaceChildren(status);
          status.textContent = r.message;
        } catch (x) {
          let m = (x && x.message) || "Sending failed. Please try again.";
          alert.textContent = m.replace(/^input\.\w+: /, "");
          button.textContent = "Send";
          button.disabled = false;
          // A spent, expired or foreign challenge: get a new one ("too quickly" keeps it).
          if (x.extensions?.field == "input.challenge" && !/quickly/.test(m)) await refresh();
        }
      } catch (_) {}
    };

    let target = me.dataset.target;
    target ? d.querySelector(target).append(host) : me.after(host);
    refresh();
  } catch (_) {}
})();
