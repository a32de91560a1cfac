// Aegir dashboard glue: run status events to HTMX refreshes, and errors that never leave a blank page.
(function () {
  'use strict';

  function flash(message) {
    var box = document.getElementById('flash');
    if (!box) { return; }
    box.textContent = message;
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { box.hidden = true; }, 10000);
  }
  window.aegirFlash = flash;

  // /ws/events sends JSON, not HTML: turn each message into an event that fragments
  // listen for (hx-trigger="aegir:runs-changed from:body") instead of swapping it.
  document.addEventListener('htmx:wsBeforeMessage', function (event) {
    event.preventDefault();
    var detail = {};
    try { detail = JSON.parse(event.detail.message); } catch (e) { return; }
    document.body.dispatchEvent(new CustomEvent('aegir:runs-changed', { detail: detail }));
  });
  // After a reconnect, events may have been missed: re-read once.
  document.addEventListener('htmx:wsOpen', function (event) {
    var socket = event.detail.socketWrapper;
    if (socket && socket.aegirOpened) {
      document.body.dispatchEvent(new CustomEvent('aegir:runs-changed', { detail: {} }));
    }
    if (socket) { socket.aegirOpened = true; }
  });

  // A run's final status never moves again, but its page hears of the status from
  // sources that are not ordered: the answer to Cancel says `cancelling` (what that
  // request committed), the re-reads that the run's events cause say what is stored
  // by then. The answer to Cancel can come last, after the run ended and the page
  // showed it: what says a run still goes never replaces what says it ended.
  document.addEventListener('htmx:beforeSwap', function (event) {
    var shown = document.getElementById('run-summary');
    var body = event.detail.serverResponse;
    if (!shown || !shown.hasAttribute('data-final') || typeof body !== 'string' ||
        body.indexOf('run-summary') < 0) { return; }
    var parsed = document.createElement('template');
    parsed.innerHTML = body;
    var incoming = parsed.content.getElementById('run-summary');
    if (incoming && incoming.getAttribute('data-run') === shown.getAttribute('data-run') &&
        !incoming.hasAttribute('data-final')) {
      event.detail.shouldSwap = false;
    }
  });

  document.addEventListener('htmx:sendError', function () {
    flash('Could not reach Aegir: check your connection and try again.');
  });
  document.addEventListener('htmx:responseError', function (event) {
    var xhr = event.detail.xhr;
    // Error pages and fragments are swapped in (see htmx-config); say so up top too.
    var text = '';
    try {
      var doc = new DOMParser().parseFromString(xhr.responseText, 'text/html');
      var found = doc.querySelector('.error-message');
      text = found ? found.textContent : '';
    } catch (e) { text = ''; }
    flash((xhr.status ? xhr.status + ': ' : '') + (text || xhr.statusText || 'the request failed'));
  });
  document.addEventListener('htmx:beforeRequest', function () {
    var box = document.getElementById('flash');
    if (box) { box.hidden = true; }
  });

  // A form that asks first (Revoke): data-confirm="the question". Capturing, so that a
  // declined one stops before htmx (boosted forms) sends anything.
  document.addEventListener('submit', function (event) {
    var question = event.target.getAttribute && event.target.getAttribute('data-confirm');
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  // Fields that apply only while another field has some value (data-applies-when=
  // '{"fields.connection": ["ssh"]}'): hidden, not removed, so their values still go.
  function applyWhen(root) {
    var scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll('[data-applies-when]').forEach(function (box) {
      var rule = {};
      try { rule = JSON.parse(box.getAttribute('data-applies-when')); } catch (e) { return; }
      var form = box.closest('form') || document;
      box.hidden = Object.keys(rule).some(function (name) {
        var inputs = form.querySelectorAll('[name="' + name + '"]');
        if (!inputs.length) { return false; }
        var input = inputs[inputs.length - 1];
        var value = input.type === 'checkbox' ? String(input.checked) : input.value;
        return rule[name].indexOf(value) < 0;
      });
    });
  }
  document.addEventListener('change', function () { applyWhen(document); });
  document.addEventListener('DOMContentLoaded', function () { applyWhen(document); });
  document.addEventListener('htmx:afterSwap', function (event) { applyWhen(event.target); });

  // A button that copies a shown secret: data-copy="#selector".
  document.addEventListener('click', function (event) {
    var button = event.target.closest && event.target.closest('[data-copy]');
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute('data-copy'));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = 'Copied';
    });
  });
})();
