
7£
198.18.0.10:80v1Œ
web.shop.svc.cluster.local198.18.0.10:808
198.18.1.2:8080%spiffe://cluster.local/ns/shop/sa/webB$"
 web-v2.shop.svc.cluster.local:80198.18.0.11:80