using System.Net;
using System.Net.Sockets;
using Crm.BuildingBlocks.Net;
using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Channels.Sms;
using Crm.Fakes.Smtp;
using Crm.Fakes.Twilio;

namespace Crm.Delivery.Tests.Channels;

/// <summary>Tenants' provider endpoints never reach the platform's own network, over real loopback connections.</summary>
public sealed class OutboundGuardTests : IAsyncLifetime
{
    private static readonly OutboundGuard Production = new(allowPrivateAddresses: false);
    private readonly FakeTwilioServer _twilio = new();
    private readonly FakeSmtpServer _smtp = new();

    public async Task InitializeAsync()
    {
        await _twilio.StartAsync();
        await _smtp.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _twilio.DisposeAsync();
        await _smtp.DisposeAsync();
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.53.0.1")]
    [InlineData("10.1.2.3")]
    [InlineData("172.16.0.1")]
    [InlineData("172.31.255.254")]
    [InlineData("192.168.1.1")]
    [InlineData("100.64.0.1")]
    [InlineData("100.127.255.254")]
    [InlineData("169.254.169.254")]
    [InlineData("0.0.0.0")]
    [InlineData("224.0.0.1")]
    [InlineData("255.255.255.255")]
    [InlineData("::1")]
    [InlineData("::")]
    [InlineData("fe80::1")]
    [InlineData("fc00::1")]
    [InlineData("fd12:3456::1")]
    [InlineData("ff02::1")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("64:ff9b::a9fe:a9fe")] // NAT64 of 169.254.169.254
    [InlineData("2002:a00:1::")]       // 6to4 of 10.0.0.1
    public void Should_refuse_addresses_outside_the_public_internet(string address) =>
        Assert.NotNull(Production.Refusal(IPAddress.Parse(address)));

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("52.1.2.3")]
    [InlineData("172.32.0.1")]
    [InlineData("100.128.0.1")]
    [InlineData("2606:4700:4700::1111")]
    [InlineData("::ffff:8.8.8.8")]
    public void Should_allow_public_addresses(string address) =>
        Assert.Null(Production.Refusal(IPAddress.Parse(address)));

    [Fact]
    public void Should_allow_private_addresses_only_when_the_operator_does() =>
        Assert.Null(new OutboundGuard(allowPrivateAddresses: true).Refusal(IPAddress.Parse("169.254.169.254")));

    [Theory]
    [InlineData("http://127.0.0.1:{port}")]
    [InlineData("http://localhost:{port}")]  // a name is judged by what it resolves to, at connection time
    [InlineData("http://[::ffff:127.0.0.1]:{port}")]
    public async Task Should_not_connect_a_Twilio_account_to_a_loopback_base_url(string baseUrl)
    {
        using var http = new HttpClient(Production.CreateHttpHandler()) { Timeout = Timeout.InfiniteTimeSpan };
        var sender = new TwilioSmsSender(http, new RecordedRetries().Policy);
        var account = new ProviderAccountConfig("twilio-main", TwilioSmsSender.Kind, new Dictionary<string, string>
        {
            ["account_sid"] = _twilio.AccountSid, ["from"] = "+15005550006",
            ["base_url"] = baseUrl.Replace("{port}", _twilio.BaseUri.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal),
        }, _twilio.AuthToken);

        var outcome = await sender.SendAsync(account, new OutgoingSms("+821012345678", "hello"), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind); // a configuration problem: not retried
        Assert.Contains("loopback", outcome.Reason, StringComparison.Ordinal);
        Assert.Empty(_twilio.Requests);
    }

    [Fact]
    public async Task Should_not_connect_an_SMTP_account_to_a_loopback_host()
    {
        var sender = new SmtpEmailSender(new RecordedRetries().Policy, Production);
        var account = new ProviderAccountConfig("smtp-main", SmtpEmailSender.Kind, new Dictionary<string, string>
        {
            ["host"] = "localhost", ["port"] = _smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), ["from"] = "shop@example.kr",
        }, null);

        var outcome = await sender.SendAsync(account,
            new OutgoingEmail("minjun@example.kr", null, "Hello", "Hello", null, new Dictionary<string, string>()), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.StartsWith("SMTP host refused: localhost resolves only to addresses outside the public internet", outcome.Reason, StringComparison.Ordinal);
        Assert.Empty(_smtp.Messages);
    }

    [Fact]
    public async Task Should_not_follow_a_redirect()
    {
        // A "provider" that redirects elsewhere (say, to the metadata endpoint): the redirect is its answer, never a second request.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var elsewhere = Ports.Closed(); // were the redirect followed, the second request would fail on a closed port
        var served = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            var buffer = new byte[4096];
            _ = await stream.ReadAsync(buffer);
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
                $"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere}/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
        });
        using var http = new HttpClient(new OutboundGuard(allowPrivateAddresses: true).CreateHttpHandler());

        using var response = await http.GetAsync($"http://127.0.0.1:{port}/");

        Assert.Equal(HttpStatusCode.TemporaryRedirect, response.StatusCode);
        await served;
    }
}
