// The live run log: a websocket tail, resumed after the last line held when the
// connection drops; only the lines on screen are in the DOM, so a log of any length
// scrolls smoothly; ANSI colours become classes and everything else is escaped.
(function () {
  'use strict';

  var LINE_HEIGHT = 18; // px: must match .log-line in aegir.css
  var OVERSCAN = 40;
  var MAX_WAIT = 5000;
  var FINAL = { succeeded: 1, failed: 1, cancelled: 1, lost: 1 };

  var ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  // CSI sequences (SGR colours kept, the rest dropped), OSC sequences, other controls.
  var CONTROL = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f]/g;

  function sgr(state, params) {
    var codes = params === '' ? [0] : params.split(';').map(Number);
    for (var i = 0; i < codes.length; i++) {
      var code = codes[i];
      if (code === 0) { state.fg = null; state.bg = null; state.bold = false; }
      else if (code === 1) { state.bold = true; }
      else if (code === 22) { state.bold = false; }
      else if (code >= 30 && code <= 37) { state.fg = code - 30; }
      else if (code >= 90 && code <= 97) { state.fg = code - 90 + 8; }
      else if (code === 39) { state.fg = null; }
      else if (code >= 40 && code <= 47) { state.bg = code - 40; }
      else if (code >= 100 && code <= 107) { state.bg = code - 100 + 8; }
      else if (code === 49) { state.bg = null; }
      else if (code === 38 || code === 48) { i += codes[i + 1] === 5 ? 2 : 4; }
    }
  }

  function classes(state) {
    var names = [];
    if (state.fg !== null) { names.push('ansi-fg-' + state.fg); }
    if (state.bg !== null) { names.push('ansi-bg-' + state.bg); }
    if (state.bold) { names.push('ansi-bold'); }
    return names.join(' ');
  }

  function ansiToHtml(text) {
    if (text.indexOf('\x1b') < 0 && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) { return escapeHtml(text); }
    var state = { fg: null, bg: null, bold: false };
    var out = '';
    var open = false;
    var last = 0;
    CONTROL.lastIndex = 0;
    var match;
    while ((match = CONTROL.exec(text)) !== null) {
      out += escapeHtml(text.slice(last, match.index));
      last = CONTROL.lastIndex;
      if (match[2] !== 'm' || match[0].charAt(0) !== '\x1b' || match[1] === undefined) { continue; }
      sgr(state, match[1]);
      if (open) { out += '</span>'; open = false; }
      var names = classes(state);
      if (names) { out += '<span class="' + names + '">'; open = true; }
    }
    out += escapeHtml(text.slice(last));
    if (open) { out += '</span>'; }
    return out;
  }
  window.aegirAnsiToHtml = ansiToHtml;

  function LogViewer(root) {
    this.root = root;
    this.url = root.getAttribute('data-ws');
    this.scroller = root.querySelector('.log-scroll');
    this.spacer = root.querySelector('.log-spacer');
    this.window = root.querySelector('.log-window');
    this.state = root.querySelector('.log-state');
    this.count = root.querySelector('.log-count');
    this.followButton = root.querySelector('.log-follow');
    this.lines = [];
    this.last = 0; // the last seq held: a reconnect asks for what follows it
    this.follow = true;
    this.ended = false;
    this.closed = false;
    this.failures = 0;
    this.painted = [-1, -1, -1];
    this.frame = 0;
    var self = this;
    this.scroller.addEventListener('scroll', function () { self.onScroll(); }, { passive: true });
    this.followButton.addEventListener('click', function () { self.resume(); });
    this.connect();
  }

  LogViewer.prototype.connect = function () {
    var self = this;
    var scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var socket = new WebSocket(scheme + '//' + location.host + this.url + '?after=' + this.last);
    this.socket = socket;
    var fresh = true;
    socket.onopen = function () {
      self.failures = 0;
      if (!self.ended) { self.say('Live: new lines appear as they are written.'); }
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      self.receive(message);
      if (fresh && message.type === 'log') {
        // A status change may have come before this socket did: have the summary re-read.
        fresh = false;
        document.body.dispatchEvent(new CustomEvent('aegir:run-changed', { detail: {} }));
      }
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) { return; }
      self.socket = null;
      if (self.ended || self.closed) { return; }
      if (event.code >= 4400 && event.code < 4500) {
        self.say('Cannot follow this log: ' + (event.reason || event.code) + '.');
        return;
      }
      var wait = Math.min(MAX_WAIT, 250 * Math.pow(2, self.failures++));
      self.say('Connection lost; reconnecting (from line ' + (self.last + 1) + ')…');
      self.timer = setTimeout(function () { self.connect(); }, wait);
    };
  };

  LogViewer.prototype.receive = function (message) {
    if (message.type === 'log') {
      var lines = message.lines;
      for (var i = 0; i < lines.length; i++) {
        if (lines[i].seq <= this.last) { continue; } // already held: no duplicates
        this.lines.push(lines[i]);
        this.last = lines[i].seq;
      }
      this.schedule();
      return;
    }
    if (message.type === 'end') {
      this.ended = true;
      var note = message.complete ? '' : ' (some lines may be missing: see the full text)';
      this.say('Finished: ' + message.status + (message.exit_code !== null && message.exit_code !== undefined ? ', exit code ' + message.exit_code : '') + '.' + note);
      this.root.setAttribute('data-ended', message.status);
    } else if (message.type === 'status' && FINAL[message.status]) {
      this.say('Finished: ' + message.status + '; the last lines are arriving…');
    }
    document.body.dispatchEvent(new CustomEvent('aegir:run-changed', { detail: message }));
  };

  LogViewer.prototype.say = function (text) { this.state.textContent = text; };

  LogViewer.prototype.schedule = function () {
    if (this.frame) { return; }
    var self = this;
    this.frame = requestAnimationFrame(function () { self.frame = 0; self.render(); });
  };

  LogViewer.prototype.render = function () {
    var total = this.lines.length;
    this.spacer.style.height = (total * LINE_HEIGHT) + 'px';
    this.count.textContent = total.toLocaleString() + (total === 1 ? ' line' : ' lines');
    if (this.follow) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    } else if (!this.ended) {
      this.followButton.hidden = false;
    }
    this.paint(false);
  };

  LogViewer.prototype.paint = function (force) {
    var top = this.scroller.scrollTop;
    var height = this.scroller.clientHeight;
    var first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
    var end = Math.min(this.lines.length, Math.ceil((top + height) / LINE_HEIGHT) + OVERSCAN);
    if (!force && first === this.painted[0] && end === this.painted[1] && this.lines.length === this.painted[2]) { return; }
    var html = '';
    for (var i = first; i < end; i++) {
      var line = this.lines[i];
      html += '<div class="log-line' + (line.stream === 'stderr' ? ' log-stderr' : '') +
        '"><span class="log-no" aria-hidden="true">' + line.seq + '</span>' + ansiToHtml(line.line) + '</div>';
    }
    this.window.style.transform = 'translateY(' + (first * LINE_HEIGHT) + 'px)';
    this.window.innerHTML = html;
    this.painted = [first, end, this.lines.length];
  };

  LogViewer.prototype.onScroll = function () {
    var bottom = this.scroller.scrollHeight - this.scroller.clientHeight;
    var atBottom = this.scroller.scrollTop >= bottom - LINE_HEIGHT * 1.5;
    this.follow = atBottom;
    this.followButton.hidden = atBottom;
    var self = this;
    if (!this.scrollFrame) {
      this.scrollFrame = requestAnimationFrame(function () { self.scrollFrame = 0; self.paint(false); });
    }
  };

  LogViewer.prototype.resume = function () {
    this.follow = true;
    this.followButton.hidden = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.scroller.focus();
    this.paint(false);
  };

  LogViewer.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) { this.socket.close(); }
  };

  function start(root) {
    if (!root.aegirLog) { root.aegirLog = new LogViewer(root); }
  }

  function init(element) {
    if (element.matches && element.matches('[data-log-viewer]')) { start(element); }
    if (element.querySelectorAll) { element.querySelectorAll('[data-log-viewer]').forEach(start); }
  }

  document.addEventListener('htmx:beforeCleanupElement', function (event) {
    var element = event.target;
    if (element.aegirLog) { element.aegirLog.close(); }
  });
  if (window.htmx) {
    htmx.onLoad(init);
  } else {
    document.addEventListener('DOMContentLoaded', function () { init(document.body); });
  }
})();
