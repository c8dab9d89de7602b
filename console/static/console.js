/* ZensCall console: small enhancements over plain forms (every page works without them).
   - data-confirm on a form: ask before submitting;
   - data-copy on a button: copy the named input's value;
   - data-upload forms: send with a progress bar (then follow the server's redirect);
   - data-recorder: record a message with MediaRecorder and upload it like a file. */
"use strict";

function sendWithProgress(form, data) {
  const bar = form.querySelector(".upload-progress");
  const button = form.querySelector("button[type=submit]");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.setRequestHeader("X-CSRFToken", form.querySelector("input[name=csrf_token]").value);
  xhr.setRequestHeader("X-Console-Upload", "1");  // answer with the next page's address
  xhr.responseType = "json";
  if (bar) { bar.hidden = false; bar.value = 0; }
  if (button) { button.disabled = true; }
  xhr.upload.addEventListener("progress", (event) => {
    if (bar && event.lengthComputable) { bar.value = Math.round((100 * event.loaded) / event.total); }
  });
  xhr.addEventListener("load", () => {
    const next = xhr.response && xhr.response.location;
    window.location.assign(next || form.action);
  });
  xhr.addEventListener("error", () => {
    if (button) { button.disabled = false; }
    window.alert("The upload failed: check the connection and try again.");
  });
  xhr.send(data);
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.hasAttribute("data-upload")) {
    event.preventDefault();
    sendWithProgress(form, new FormData(form));
  }
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) { return; }
  const input = document.getElementById(button.getAttribute("data-copy"));
  input.select();
  const done = () => { button.textContent = "Copied"; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, () => { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});

function setUpRecorder(box) {
  if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { return; }
  box.hidden = false;
  const start = box.querySelector("[data-record-start]");
  const stop = box.querySelector("[data-record-stop]");
  const state = box.querySelector("[data-record-state]");
  const preview = box.querySelector("[data-record-preview]");
  const form = box.querySelector("[data-record-form]");
  let recorder = null;
  let chunks = [];
  let recording = null;

  start.addEventListener("click", async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => { if (e.data.size) { chunks.push(e.data); } });
      recorder.addEventListener("stop", () => {
        stream.getTracks().forEach((t) => t.stop());
        recording = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        preview.src = URL.createObjectURL(recording);
        preview.hidden = false;
        form.hidden = false;
        state.textContent = "Recorded " + Math.round(recording.size / 1024) + " KB. Listen, then save it.";
      });
      recorder.start();
      start.disabled = true;
      stop.disabled = false;
      state.textContent = "Recording…";
    } catch (err) {
      state.textContent = "The microphone is not available: " + err.message;
    }
  });
  stop.addEventListener("click", () => {
    if (recorder && recorder.state !== "inactive") { recorder.stop(); }
    start.disabled = false;
    stop.disabled = true;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!recording) { return; }
    const data = new FormData(form);
    const type = recording.type.split(";")[0];
    const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    data.append("file", recording, "recording." + extension);
    sendWithProgress(form, data);
  });
}

document.querySelectorAll("[data-recorder]").forEach(setUpRecorder);
