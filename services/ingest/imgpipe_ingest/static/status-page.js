// imgpipe's status page: polls the JSON status API while the request runs and shows what it answers.
// Everything from the API is put in the page as text (textContent), never as markup.
"use strict";

(function () {
  const page = document.body.dataset;
  const statusApi = new URL(page.statusApi, location.href);
  const rowsApi = new URL(page.rowsApi, location.href);
  const requestId = page.requestId;
  const KEY = "imgpipe-api-key";
  const ROWS_PER_PAGE = 50;
  const FAILED_ROWS_PER_PAGE = 20;
  const RUNNING_POLL_MS = 1000;
  const RETRY_MS = 3000;
  // Once finished, webhooks are still being sent: polled this often, for this long if none has appeared.
  const FINISHED_POLL_MS = 5000;
  const WEBHOOK_WAIT_MS = 120000;
  const FINISHED = ["SUCCESS", "FAILED"];
  const OPEN_WEBHOOK = ["pending", "retrying"];
  const numbers = new Intl.NumberFormat("en");
  const $ = (id) => document.getElementById(id);
  const FAILURES_EVERY_MS = 5000;
  const state = {
    rowsOffset: 0, rowsSeen: null, failuresOffset: 0, failuresSeen: null, failuresAt: 0,
    finishedAt: null, timer: null, key: "",
  };

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY) || "";
    } catch (error) {
      return state.key;
    }
  }

  function storeKey(key) {
    state.key = key;
    try {
      if (key) sessionStorage.setItem(KEY, key);
      else sessionStorage.removeItem(KEY);
    } catch (error) {
      // sessionStorage refused (e.g. storage disabled): the key lives as long as the page.
    }
  }

  function headers() {
    const key = storedKey();
    return key ? { Accept: "application/json", "X-API-Key": key } : { Accept: "application/json" };
  }

  async function call(base, params) {
    const url = new URL(base);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
    let response;
    try {
      response = await fetch(url, { headers: headers(), cache: "no-store", credentials: "omit" });
    } catch (error) {
      return { code: 0, message: "imgpipe did not answer", payload: null };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    return {
      code: response.status,
      message: (body && body.message) || response.statusText,
      payload: body ? body.payload : null,
    };
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function safeUrl(value) {
    try {
      const url = new URL(value, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function link(url, text) {
    const href = safeUrl(url);
    if (!href) return element("span", text);
    const anchor = element("a", text);
    anchor.href = href;
    anchor.rel = "noopener noreferrer";
    return anchor;
  }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  function askForKey(reason) {
    $("request").hidden = true;
    $("key-reason").textContent = reason;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  function later(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    state.timer = null;
    const answer = await call(statusApi, { request_id: requestId });
    if (answer.code === 401) {
      notice("");
      askForKey(storedKey() ? "That API key is not valid here." : "This imgpipe needs an API key to show a request.");
      return;
    }
    if (answer.code === 404) {
      $("request").hidden = true;
      if (storedKey()) {
        notice("");
        askForKey("No request with this id was made with this API key. Try another key:");
      } else {
        notice("There is no request with this id.");
      }
      return;
    }
    if (answer.code === 410) {
      $("request").hidden = true;
      notice(answer.message);
      return;
    }
    if (answer.code !== 200) {
      notice(`imgpipe is briefly unavailable (${answer.code || "no answer"}: ${answer.message}); retrying…`);
      later(RETRY_MS);
      return;
    }
    notice("");
    $("key-form").hidden = true;
    $("request").hidden = false;
    $("forget-key").hidden = !storedKey();
    const status = answer.payload;
    showStatus(status);
    const finished = FINISHED.includes(status.status);
    const progress = status.progress;
    const rowsSeen = `${progress.rows_done}/${status.status}`;
    const failuresSeen = `${progress.images_failed}/${status.status}`;
    if (rowsSeen !== state.rowsSeen && (await showRowPage())) state.rowsSeen = rowsSeen;
    // Finding the failed rows reads every done row: while the request runs, not more often than this.
    const failuresDue = finished || Date.now() - state.failuresAt >= FAILURES_EVERY_MS;
    if (failuresSeen !== state.failuresSeen && failuresDue) {
      if (progress.images_failed) state.failuresAt = Date.now();
      if (await showFailures(progress.images_failed)) state.failuresSeen = failuresSeen;
    }
    if (!finished) return later(RUNNING_POLL_MS);
    if (state.finishedAt === null) state.finishedAt = Date.now();
    const open = status.webhooks.some((webhook) => OPEN_WEBHOOK.includes(webhook.state));
    const waiting = status.webhooks.length === 0 && Date.now() - state.finishedAt < WEBHOOK_WAIT_MS;
    const behind = state.rowsSeen !== rowsSeen || state.failuresSeen !== failuresSeen;
    if (open || waiting || behind) later(behind ? RETRY_MS : FINISHED_POLL_MS);
  }

  function showStatus(status) {
    const progress = status.progress;
    const finished = FINISHED.includes(status.status);
    const images = progress.images_ok + progress.images_failed;
    let percent = progress.images_total ? Math.floor((100 * images) / progress.images_total) : 0;
    if (finished) percent = 100;
    $("status").textContent = status.status;
    $("status").className = `status status-${status.status.toLowerCase()}`;
    $("updated").textContent = `(updated ${new Date().toLocaleTimeString("en-GB")})`;
    $("bar").setAttribute("aria-valuenow", String(percent));
    $("bar-fill").style.width = `${percent}%`;
    $("percent").textContent = `${percent} %`;
    const accepting = status.rows_accepted < progress.rows_total;
    $("rows-count").textContent =
      `${numbers.format(progress.rows_done)} of ${numbers.format(progress.rows_total)} done` +
      (accepting ? ` (${numbers.format(status.rows_accepted)} accepted so far)` : "");
    const waiting = Math.max(progress.images_total - images, 0);
    $("images-count").textContent =
      `${numbers.format(progress.images_ok)} ok, ${numbers.format(progress.images_failed)} failed, ` +
      `${numbers.format(waiting)} waiting, of ${numbers.format(progress.images_total)}`;
    $("output").replaceChildren(
      status.output_file_url ? link(status.output_file_url, "output.csv") : element("span", "not ready yet"),
    );
    showWebhooks(status.webhooks);
  }

  function when(iso) {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? iso : at.toLocaleString("en-GB", { timeZoneName: "short" });
  }

  function showWebhooks(webhooks) {
    $("webhooks-none").hidden = webhooks.length > 0;
    $("webhooks").hidden = webhooks.length === 0;
    $("webhooks-body").replaceChildren(
      ...webhooks.map((webhook) => {
        const row = element("tr");
        const attempts = webhook.attempts.map((attempt) => `${when(attempt.at)} → ${attempt.outcome}`).join("; ");
        row.append(element("td", webhook.url), element("td", webhook.state), element("td", attempts || "none yet"));
        return row;
      }),
    );
  }

  function pager(prefix, payload, what) {
    const first = payload.offset + 1;
    const last = payload.offset + payload.rows.length;
    const of = payload.total === null ? "" : ` of ${numbers.format(payload.total)}`;
    const shown = payload.rows.length ? `${numbers.format(first)}–${numbers.format(last)}` : "none here";
    $(`${prefix}-range`).textContent = `${what} ${shown}${of}`;
    $(`${prefix}-prev`).disabled = payload.offset === 0;
    $(`${prefix}-next`).disabled = !payload.more;
  }

  async function showRowPage() {
    const answer = await call(rowsApi, { request_id: requestId, offset: state.rowsOffset, limit: ROWS_PER_PAGE });
    if (answer.code !== 200) return false;
    const payload = answer.payload;
    const input = $("input");
    input.replaceChildren(payload.input_file_url ? inputLink(payload.input_file_url) : element("span", "none"));
    pager("rows", payload, "rows");
    $("rows-body").replaceChildren(
      ...payload.rows.map((row) => {
        const failed = row.images.filter((image) => !image.output_url).length;
        let outcome = "waiting";
        if (row.done) outcome = failed ? `${row.images.length - failed} ok, ${failed} failed` : "ok";
        const tr = element("tr", null, row.done ? (failed ? "row-failed" : "row-ok") : "row-waiting");
        const thumbnails = element("td", null, "thumbnails");
        row.images.forEach((image, index) => thumbnails.append(thumbnail(row, image, index)));
        tr.append(element("td", row.serial), element("td", row.product_name), element("td", outcome, "outcome"));
        tr.append(thumbnails);
        return tr;
      }),
    );
    return true;
  }

  function thumbnail(row, image, index) {
    const href = image.output_url && safeUrl(image.output_url);
    if (!href) {
      const mark = element("span", `✗ ${image.error_code || "failed"}`, "failed-image");
      mark.title = image.error_message || "";
      return mark;
    }
    const anchor = link(href, "");
    const img = element("img");
    img.src = href;
    img.loading = "lazy";
    img.width = 64;
    img.height = 64;
    img.alt = `output image ${index + 1} of row ${row.serial}`;
    anchor.append(img);
    return anchor;
  }

  async function showFailures(imagesFailed) {
    $("failures").hidden = imagesFailed === 0;
    $("failed-count").textContent = numbers.format(imagesFailed);
    if (imagesFailed === 0) return true;
    const params = { request_id: requestId, offset: state.failuresOffset, limit: FAILED_ROWS_PER_PAGE, failed: true };
    const answer = await call(rowsApi, params);
    if (answer.code !== 200) return false;
    pager("failures", answer.payload, "rows with a failed image:");
    const lines = [];
    for (const row of answer.payload.rows) {
      for (const image of row.images.filter((each) => !each.output_url)) {
        const tr = element("tr");
        const error = `${image.error_code || "failed"}: ${image.error_message || ""}`;
        tr.append(element("td", row.serial), element("td", row.product_name));
        const source = element("td");
        source.append(link(image.source_url, image.source_url));
        tr.append(source, element("td", error, "error"));
        lines.push(tr);
      }
    }
    $("failures-body").replaceChildren(...lines);
    return true;
  }

  function inputLink(url) {
    const anchor = link(url, "input.csv");
    // A plain link sends no header: with a key, the file is fetched with it and handed over as a download.
    anchor.addEventListener("click", async (event) => {
      if (!storedKey()) return;
      event.preventDefault();
      const response = await fetch(anchor.href, { headers: headers(), credentials: "omit" }).catch(() => null);
      if (!response || !response.ok) {
        notice(`The input CSV could not be fetched (${response ? response.status : "no answer"}).`);
        return;
      }
      const file = URL.createObjectURL(await response.blob());
      const download = element("a");
      download.href = file;
      download.download = "input.csv";
      document.body.append(download);
      download.click();
      download.remove();
      setTimeout(() => URL.revokeObjectURL(file), 60000);
    });
    return anchor;
  }

  function turn(prefix, size, direction) {
    $(`${prefix}-${direction > 0 ? "next" : "prev"}`).addEventListener("click", async () => {
      state[`${prefix}Offset`] = Math.max(0, state[`${prefix}Offset`] + direction * size);
      state[`${prefix}Seen`] = null;
      if (prefix === "failures") state.failuresAt = 0;
      clearTimeout(state.timer);
      await refresh();
    });
  }

  turn("rows", ROWS_PER_PAGE, 1);
  turn("rows", ROWS_PER_PAGE, -1);
  turn("failures", FAILED_ROWS_PER_PAGE, 1);
  turn("failures", FAILED_ROWS_PER_PAGE, -1);

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeKey($("key-input").value.trim());
    $("key-input").value = "";
    refresh();
  });

  $("forget-key").addEventListener("click", () => {
    storeKey("");
    refresh();
  });

  refresh();
})();
