using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Crm.Fakes.Smtp;

/// <summary>
/// A real SMTP server (RFC 5321, no AUTH, no TLS) on 127.0.0.1 with an ephemeral port, for tests and
/// the local demo. Records every accepted message, and can be told to refuse or to hang so that a
/// client's error handling and timeouts are exercised over a real socket.
/// </summary>
/// <example>
/// <code>
/// await using var smtp = new FakeSmtpServer();
/// await smtp.StartAsync();
/// smtp.FailNextMessages(1, SmtpStage.DataEnd, 451, "4.3.0 Try again later");
/// // ... point the client at 127.0.0.1:smtp.Port, SecureSocketOptions.None, no authentication ...
/// var mails = await smtp.WaitForMessagesAsync(1, TimeSpan.FromSeconds(5));
/// </code>
/// </example>
public sealed class FakeSmtpServer : IAsyncDisposable
{
    /// <summary>Pass as <c>times</c> for a failure that never runs out.</summary>
    public const int Forever = int.MaxValue;

    private readonly FakeSmtpServerOptions _options;
    private readonly RecordLog<ReceivedEmail> _messages = new();
    private readonly RecordLog<SmtpFaultEvent> _faults = new();
    private readonly ConcurrentDictionary<Task, byte> _sessions = new();
    private readonly CancellationTokenSource _stopping = new();
    private TcpListener? _listener;
    private Task? _acceptLoop;

    public FakeSmtpServer(FakeSmtpServerOptions? options = null)
    {
        _options = options ?? new FakeSmtpServerOptions();
    }

    public string Host => "127.0.0.1";

    /// <summary>The ephemeral port, known once <see cref="StartAsync"/> returned.</summary>
    public int Port => ((IPEndPoint?)_listener?.LocalEndpoint)?.Port
        ?? throw new InvalidOperationException("Call StartAsync first.");

    /// <summary>Accepted messages so far (a snapshot, in acceptance order).</summary>
    public IReadOnlyList<ReceivedEmail> Messages => _messages.Snapshot();

    /// <summary>Programmed failures that were served so far (a snapshot).</summary>
    public IReadOnlyList<SmtpFaultEvent> FaultsServed => _faults.Snapshot();

    internal SmtpFaultPlan Faults { get; } = new();

    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (_listener is not null)
        {
            throw new InvalidOperationException("Already started.");
        }
        _listener = new TcpListener(IPAddress.Loopback, _options.Port);
        _listener.Start(backlog: 64);
        _acceptLoop = AcceptLoopAsync(_listener);
        return Task.CompletedTask;
    }

    /// <summary>Waits until at least <paramref name="count"/> messages were accepted; returns them all.</summary>
    /// <exception cref="TimeoutException">Lists what did arrive.</exception>
    public Task<IReadOnlyList<ReceivedEmail>> WaitForMessagesAsync(
        int count, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _messages.WaitForCountAsync(count, timeout, got => string.Join("; ", got), cancellationToken);

    /// <summary>
    /// Waits until at least <paramref name="count"/> faults were served. A client can give up (time
    /// out) before the server has read far enough to serve the fault, so tests wait for it.
    /// </summary>
    public Task<IReadOnlyList<SmtpFaultEvent>> WaitForFaultsAsync(
        int count, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _faults.WaitForCountAsync(count, timeout, got => string.Join("; ", got), cancellationToken);

    /// <summary>
    /// The next <paramref name="count"/> messages (whatever their recipients) get
    /// <paramref name="code"/> <paramref name="text"/> at <paramref name="stage"/>; e.g.
    /// <c>(1, SmtpStage.Rcpt, 550, "5.1.1 User unknown")</c> or <c>(2, SmtpStage.DataEnd, 451, "4.3.0 Try again later")</c>.
    /// At RCPT every recipient of an affected message is refused. For <see cref="SmtpStage.Greeting"/> it
    /// counts connections. A 421 reply also closes the connection.
    /// </summary>
    public void FailNextMessages(int count, SmtpStage stage, int code, string text) =>
        Faults.Add(stage, new SmtpReply(code, text), recipient: null, count);

    /// <summary>
    /// Messages to <paramref name="recipient"/> (case-insensitive) get <paramref name="code"/> <paramref name="text"/>
    /// at RCPT (only that recipient is refused) or at the end of DATA (the whole message is refused),
    /// <paramref name="times"/> times, by default forever.
    /// </summary>
    public void FailRecipient(string recipient, SmtpStage stage, int code, string text, int times = Forever)
    {
        ArgumentException.ThrowIfNullOrEmpty(recipient);
        if (stage == SmtpStage.Greeting)
        {
            throw new ArgumentException("The greeting happens before any recipient is known.", nameof(stage));
        }
        Faults.Add(stage, new SmtpReply(code, text), recipient, times);
    }

    /// <summary>
    /// The next <paramref name="count"/> messages (connections, for <see cref="SmtpStage.Greeting"/>) get no
    /// reply at all at <paramref name="stage"/>: the server reads and discards until the client disconnects.
    /// Note a hang at <see cref="SmtpStage.DataEnd"/> leaves the message unrecorded although the client sent it.
    /// </summary>
    public void HangNextMessages(int count, SmtpStage stage) =>
        Faults.Add(stage, reply: null, recipient: null, count);

    /// <summary>Forgets programmed failures that were not served yet.</summary>
    public void ClearFaults() => Faults.Clear();

    /// <summary>Forgets recorded messages and served faults.</summary>
    public void ClearMessages()
    {
        _messages.Clear();
        _faults.Clear();
    }

    internal void RecordMessage(ReceivedEmail message) => _messages.Add(message);

    internal void RecordFault(SmtpStage stage, SmtpReply? reply, string? from, IReadOnlyList<string> recipients) =>
        _faults.Add(new SmtpFaultEvent(DateTimeOffset.UtcNow, stage, reply, from, recipients));

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Stop();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        // Sessions observe the token (reads and writes are cancelled), so this does not wait for clients.
        await Task.WhenAll(_sessions.Keys).ConfigureAwait(false);
        _listener?.Dispose();
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(TcpListener listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;  // stopping
            }
            var session = ServeAsync(client);
            _sessions.TryAdd(session, 0);
            _ = session.ContinueWith(t => _sessions.TryRemove(t, out _), TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        // Off the accept loop at once, so one slow client never delays the next connection.
        await Task.Yield();
        using (client)
        {
            client.NoDelay = true;
            await using var stream = client.GetStream();
            await new SmtpSession(stream, this, _options, _stopping.Token).RunAsync().ConfigureAwait(false);
        }
    }
}
