using System.Net.Sockets;
using System.Text;
using Crm.Fakes.Smtp;

namespace Crm.Fakes.Tests.Smtp;

/// <summary>The SMTP dialogue at the byte level, where MailKit would hide mistakes.</summary>
public sealed class SmtpFakeProtocolTests : IAsyncLifetime
{
    private readonly FakeSmtpServer _smtp = new(new FakeSmtpServerOptions { MaxMessageSize = 100_000 });
    private TcpClient? _tcp;
    private StreamReader? _reader;
    private NetworkStream? _stream;

    public async Task InitializeAsync()
    {
        await _smtp.StartAsync();
        _tcp = new TcpClient();
        await _tcp.ConnectAsync(_smtp.Host, _smtp.Port);
        _stream = _tcp.GetStream();
        _stream.ReadTimeout = 5000;
        _reader = new StreamReader(_stream, new UTF8Encoding(false));
    }

    public async Task DisposeAsync()
    {
        _tcp?.Dispose();
        await _smtp.DisposeAsync();
    }

    [Fact]
    public async Task Full_dialogue_with_pipelining_dot_unstuffing_RSET_NOOP_and_QUIT()
    {
        Assert.StartsWith("220 ", await ReadReplyAsync(), StringComparison.Ordinal);

        var ehlo = await CommandAsync("EHLO client.test");
        Assert.Contains("250-8BITMIME", ehlo, StringComparison.Ordinal);
        Assert.Contains("250-SMTPUTF8", ehlo, StringComparison.Ordinal);
        Assert.Contains("250-SIZE 100000", ehlo, StringComparison.Ordinal);
        Assert.Contains("250-PIPELINING", ehlo, StringComparison.Ordinal);
        Assert.DoesNotContain("AUTH", ehlo, StringComparison.Ordinal);
        Assert.DoesNotContain("STARTTLS", ehlo, StringComparison.Ordinal);

        Assert.StartsWith("250 ", await CommandAsync("NOOP"), StringComparison.Ordinal);
        Assert.StartsWith("503 ", await CommandAsync("DATA"), StringComparison.Ordinal);
        Assert.StartsWith("503 ", await CommandAsync("RCPT TO:<a@example.kr>"), StringComparison.Ordinal);

        // A pipelined batch: all three commands in one write, three replies in order.
        await WriteAsync("MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<a@example.kr>\r\nRCPT TO:<b@example.kr>\r\n");
        Assert.StartsWith("250 ", await ReadReplyAsync(), StringComparison.Ordinal);
        Assert.StartsWith("250 ", await ReadReplyAsync(), StringComparison.Ordinal);
        Assert.StartsWith("250 ", await ReadReplyAsync(), StringComparison.Ordinal);
        Assert.StartsWith("354 ", await CommandAsync("DATA"), StringComparison.Ordinal);
        Assert.StartsWith("250 ", await CommandAsync("Subject: dots\r\n\r\n..starts with one dot\r\n...\r\nend\r\n."), StringComparison.Ordinal);

        var mail = Assert.Single(_smtp.Messages);
        Assert.Equal("", mail.EnvelopeFrom);
        Assert.Equal(["a@example.kr", "b@example.kr"], mail.Recipients);
        Assert.Equal("8BITMIME", mail.BodyType);
        Assert.Equal("client.test", mail.ClientName);
        Assert.Equal("Subject: dots\r\n\r\n.starts with one dot\r\n..\r\nend\r\n", mail.RawText);

        Assert.StartsWith("250 ", await CommandAsync("MAIL FROM:<x@crm.test>"), StringComparison.Ordinal);
        Assert.StartsWith("503 ", await CommandAsync("MAIL FROM:<x@crm.test>"), StringComparison.Ordinal);  // nested
        Assert.StartsWith("250 ", await CommandAsync("RSET"), StringComparison.Ordinal);
        Assert.StartsWith("250 ", await CommandAsync("MAIL FROM:<x@crm.test>"), StringComparison.Ordinal);
        Assert.StartsWith("221 ", await CommandAsync("QUIT"), StringComparison.Ordinal);
        Assert.Null(await _reader!.ReadLineAsync());  // server closed
    }

    [Fact]
    public async Task Sizes_and_sequence_are_enforced()
    {
        await ReadReplyAsync();
        Assert.StartsWith("503 ", await CommandAsync("MAIL FROM:<x@crm.test>"), StringComparison.Ordinal);  // no EHLO yet
        await CommandAsync("HELO client.test");
        Assert.StartsWith("552 ", await CommandAsync("MAIL FROM:<x@crm.test> SIZE=100001"), StringComparison.Ordinal);
        Assert.StartsWith("553 ", await CommandAsync("MAIL FROM:<사용자@crm.test>"), StringComparison.Ordinal);  // no SMTPUTF8
        Assert.StartsWith("555 ", await CommandAsync("MAIL FROM:<x@crm.test> FOO=BAR"), StringComparison.Ordinal);
        Assert.StartsWith("250 ", await CommandAsync("MAIL FROM:<x@crm.test>"), StringComparison.Ordinal);
        Assert.StartsWith("554 ", await CommandAsync("DATA"), StringComparison.Ordinal);  // no recipient yet
        Assert.StartsWith("250 ", await CommandAsync("RCPT TO:<a@example.kr>"), StringComparison.Ordinal);
        Assert.StartsWith("354 ", await CommandAsync("DATA"), StringComparison.Ordinal);
        Assert.StartsWith("552 ", await CommandAsync(new string('x', 150_000) + "\r\n."), StringComparison.Ordinal);
        Assert.Empty(_smtp.Messages);
        Assert.StartsWith("500 ", await CommandAsync("BOGUS"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Lines_longer_than_the_read_buffer_arrive_whole()
    {
        var longLine = string.Concat(Enumerable.Repeat("0123456789", 4_000));  // 40,000 bytes, no CRLF
        await ReadReplyAsync();
        await CommandAsync("EHLO client.test");
        await WriteAsync("MAIL FROM:<x@crm.test>\r\nRCPT TO:<a@example.kr>\r\nDATA\r\n");
        await ReadReplyAsync();
        await ReadReplyAsync();
        Assert.StartsWith("354 ", await ReadReplyAsync(), StringComparison.Ordinal);
        // Sent in small writes so the server sees a line split across many reads.
        foreach (var chunk in $"Subject: long\r\n\r\n{longLine}\r\n.\r\n".Chunk(1000))
        {
            await WriteAsync(new string(chunk));
        }

        Assert.StartsWith("250 ", await ReadReplyAsync(), StringComparison.Ordinal);
        Assert.Equal($"Subject: long\r\n\r\n{longLine}\r\n", Assert.Single(_smtp.Messages).RawText);
    }

    private async Task<string> CommandAsync(string line)
    {
        await WriteAsync(line + "\r\n");
        return await ReadReplyAsync();
    }

    private async Task WriteAsync(string text)
    {
        await _stream!.WriteAsync(Encoding.UTF8.GetBytes(text));
        await _stream.FlushAsync();
    }

    /// <summary>Reads one possibly multi-line reply ("250-...", "250 ...").</summary>
    private async Task<string> ReadReplyAsync()
    {
        var reply = new StringBuilder();
        while (true)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var line = await _reader!.ReadLineAsync(timeout.Token) ?? throw new IOException("connection closed");
            reply.Append(line).Append('\n');
            if (line.Length < 4 || line[3] == ' ')
            {
                return reply.ToString();
            }
        }
    }
}
